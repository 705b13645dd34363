"""Hardware-in-the-loop multi-objective AutoML on Ray Tune (issue 7): not built yet."""

__all__: list[str] = []
