"""Access control: who may do what, decided once per request before a handler runs.

`middleware.setup_auth` plugs the configured controller (`auth.token` or `auth.htpasswd`) into
the application; `access` derives the access a request needs from its route, `token` verifies
bearer tokens, `cache` remembers verified ones, `htpasswd` checks basic credentials, and
`tokenserver` is an issuer for standalone use. Nothing here is imported by `fastreg.registry` or
`fastreg.storage`.
"""
