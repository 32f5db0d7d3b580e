"""Image synthesis and editing with diffusers.

``pool`` loads each pipeline once per process, ``batcher`` gathers concurrent
requests into one pipeline call, ``execution`` runs a batch in a worker thread
(splitting it on failure), ``seeding`` derives per-image seeds. Nothing here
imports torch or diffusers at module import; that happens when a pipeline is
first needed.
"""
