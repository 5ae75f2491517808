"""Caches in front of storage: blob descriptors and repository links, tag lists (`caches`), and
the bounded LRU map they and the manifest store keep in memory (`lru`)."""
