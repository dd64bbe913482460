"""Load benchmarks of search-serving deployments (``mmsr bench``, docs/bench.md).

A run sends a workload (:mod:`.workload`) to targets under load profiles (:mod:`.profiles`):
``mmsr serve`` through its HTTP API (:mod:`.client`), and optionally the client-side loop a user
would write without mmsr (:mod:`.baseline`); it records each request (:mod:`.records`), reduces
them to figures (:mod:`.stats`), checks them against the server's ``/metrics``
(:mod:`.server_metrics`) and writes tables, JSON and a plot (:mod:`.report`). :mod:`.stack`
starts a whole deployment of stand-ins on loopback (:mod:`mmsr_bench.standins`).
"""
