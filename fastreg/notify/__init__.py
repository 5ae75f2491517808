"""Registry events for listeners (Distribution's notifications), delivered durably.

`config` reads `notifications`; `events` derives events from finished requests; `sinks` is the
chain per endpoint (filter -> on-disk queue -> retry -> HTTP); `spool` is the on-disk format;
`service` plugs the middleware and the lifecycle into the application. Nothing in
`fastreg.registry` or `fastreg.storage` imports this package.
"""
