"""
C{chatthing bench}: how much a chatthing server delivers, how fast, and at
what cost, on the machine it runs on, next to a minimal Autobahn broadcast
server and a minimal Node C{ws} one under the same load.

- L{chatthing.bench.rawclient}: the load generator's hand-written WebSocket
  page, cheap per frame.
- L{chatthing.bench.crowd}, L{chatthing.bench.traffic},
  L{chatthing.bench.meter}: opening pages, the scenarios' traffic, and what
  each window cost.
- L{chatthing.bench.load}: the load generator's process.
- L{chatthing.bench.baseline}: the baseline server's process.
- L{chatthing.bench.nodepeer}: the same on Node's C{ws}, installed into
  the user's cache when C{node} and C{npm} exist.
- L{chatthing.bench.storm}, L{chatthing.bench.presence}: the join storm,
  and how its pages count the names they see.
- L{chatthing.bench.servers}: starting, pinning and stopping the servers
  (and Redis).
- L{chatthing.bench.scenarios}: which servers run which load, and the
  figures compared.
- L{chatthing.bench.report}, L{chatthing.bench.tables}: the table, the
  issue's targets, the growth series, the JSON file and the plot.
"""
