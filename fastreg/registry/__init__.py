"""The registry domain: names, digests, manifests, upload sessions, tags. No HTTP here."""
