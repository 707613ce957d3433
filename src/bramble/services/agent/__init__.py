"""The Pi agent (``bramble-agent``): hears the beacon, registers, posts telemetry, runs jobs.

Modules: ``sampler`` (what a sample is and where it comes from), ``buffer`` (the bounded
local buffer), ``backoff`` (retry delays), ``identity`` (MAC, IP and serial of this node),
``client`` (the server's REST API), ``http`` (the agent's own API), ``agent`` (the loops that
tie them together) and ``main`` (the command line). The wire contract is
docs/services-protocol.md; the operator's guide is docs/agent.md.
"""

from bramble import __version__

AGENT_VERSION = __version__
