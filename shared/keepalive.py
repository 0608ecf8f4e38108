"""How long idle keep-alive connections stay open: the one bound every server and client of
the project is set from.

A pooled client sends its next request on a connection it kept open. If the server closes
that connection after the same idle time, the two race: the request goes out as the server
closes, and fails without an answer (`RemoteDisconnected`, "Server disconnected without
sending a response"). uvicorn closes an idle connection after 5 s by default, and httpx's
pool keeps one for 5 s. So the side that must let go first is the client:

    clients' pools (httpx: CLIENT_IDLE_SECONDS)  <  load balancers (commonly 60 s)
        <  servers (SERVER_KEEP_ALIVE_SECONDS)

Every uvicorn the project starts (the services, the git server, MLflow and Prefect) keeps an
idle connection open for SERVER_KEEP_ALIVE_SECONDS. Clients whose pools have no idle limit
(`requests`, which MLflow's client uses) can still meet a connection closed by a server or a
proxy set otherwise: those retry, see `shared/http_client.py` and level 1's service.

No third-party import here: the serving image (no httpx) reads it too.
"""

SERVER_KEEP_ALIVE_SECONDS = 75  # uvicorn's `timeout_keep_alive` (nginx's default, too)
CLIENT_IDLE_SECONDS = 5.0  # the project's httpx pools drop a connection idle this long
