"""The pull-through cache (Distribution's `proxy:` section, fastreg's `proxy.upstreams`).

`settings.py` reads the section; `routing.py` says which upstream a name belongs to (or none: a
local repository) and under which name it is stored; `upstream.py` is the HTTP client of one
upstream registry (its auth challenge, its errors as registry errors); `mirror.py` is what a pull
does on a mirrored name (check a tag upstream, fetch and store what is not cached, serve stale
when the upstream is down); `expiry.py` records last use and removes what went unused for the
upstream's ttl. The API asks `Registry` and never talks to an upstream itself.
"""
