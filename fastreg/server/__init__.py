"""The running server: what a serving process needs beside the registry's own modules.

The app factory and its request pipeline, health and the debug server, metrics, logging,
background maintenance and the allocator. Imports point inwards only: this package wires
`fastreg.api`, `fastreg.auth`, `fastreg.notify` and `fastreg.registry`; none of them imports
it. Nothing is imported here, so importing one module of the package (the metrics, say) does
not load the whole application.
"""
