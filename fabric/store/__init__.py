"""Storage: a content-addressed store (local or any fsspec URL), signing, the artifact registry."""

from fabric.store.backend import (  # noqa: F401
    TMP_PREFIX,
    Store,
    default_store_url,
)
from fabric.store.registry import (  # noqa: F401
    DEFAULT_TENANT,
    KINDS,
    ArtifactNotFound,
    ArtifactRecord,
    IntegrityError,
    Registry,
    code_version,
    sbom,
)
from fabric.store.signing import (  # noqa: F401
    ENV_KEY,
    ENV_TRUSTED,
    Keyring,
    SignatureError,
    Signer,
    canonical,
    default_key_path,
    key_id_of,
)

__all__ = [
    "Store",
    "default_store_url",
    "TMP_PREFIX",
    "Registry",
    "ArtifactRecord",
    "IntegrityError",
    "ArtifactNotFound",
    "code_version",
    "sbom",
    "KINDS",
    "DEFAULT_TENANT",
    "Signer",
    "Keyring",
    "SignatureError",
    "canonical",
    "default_key_path",
    "key_id_of",
    "ENV_KEY",
    "ENV_TRUSTED",
]
