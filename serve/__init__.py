"""Ray Serve applications for deployed models (issue 8): not built yet."""

__all__: list[str] = []
