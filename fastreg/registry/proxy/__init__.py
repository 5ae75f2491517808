"""The pull-through cache (Distribution's `proxy:` section, fastreg's `proxy.upstreams`).

`settings.py` reads the section; `upstream.py` is the HTTP client of one upstream registry
(its auth challenge, its errors as registry errors); `mirror.py` is what a pull does on a
mirrored name (check a tag upstream, fetch and store what is not cached, serve stale when the
upstream is down). The API asks `Registry.mirror` and never talks to an upstream itself.
"""
