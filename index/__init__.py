"""FAISS similarity index over the two-tower model's embeddings, and the service that queries it.

Export (``export``, its options and flags in ``export_options``) -> one gated, checksummed
version folder + LATEST pointer (``builder``, ``layout``); queries in-process
(``similarity``), over HTTP (``service``, its endpoints in ``routes``, hot reload via
``live``) or from a shell (``similar``); optional poster CNN index (``posters``).
"""
