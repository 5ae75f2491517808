"""fastreg: an OCI Distribution registry, a drop-in replacement for CNCF Distribution."""

__version__ = "0.1.0"
