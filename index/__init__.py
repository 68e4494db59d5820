"""FAISS similarity index over the two-tower model's embeddings, and the service that queries it.

Export (``export``) -> one gated, checksummed version folder + LATEST pointer (``builder``,
``layout``); queries in-process (``similarity``), over HTTP (``service``, hot reload via
``live``) or from a shell (``similar``); optional poster CNN index (``posters``).
"""
