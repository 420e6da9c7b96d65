"""`pullctl serve`: the app DAPR calls when a pull's job fires (DESIGN §3, §4a).

Routes
    ``POST /job/{name}``                       the DAPR scheduler's callback; body = the job's ``data``
                                               (``{"source_id", "config_hash"}``); no body: ``pull-<id>``
    ``POST /api/v1/triggers/job/{source_id}``  the same run, for people and other services
    ``GET /healthz``                           200 while the store answers, else 503
    ``GET /readyz``                            200 once the store is open and the start-up jobs sync is done

A trigger reads the configs once, in a thread (``ConfigSource.all``: a slow config store stalls neither
``/healthz`` nor other triggers), and runs the source it found with
``run_pulls(..., RunOptions(trigger="dapr"), loaded=source)``. It answers with the run record:
200 when it succeeded or was partial (``status`` says which), 500 when it failed (so DAPR's failure policy
retries), 409 while a run of that source is in progress in this process, 404 only when no such source
exists. DAPR treats a 404 as success and drops the trigger silently, so that case is logged as an error.

At start-up (lifespan) the store is opened and a background task performs ``jobs sync``, retried with
bounded back-off while the sidecar is not ready yet; the app listens meanwhile (daprd waits for the app
port). On shutdown, in-flight runs get ``shutdown_grace`` seconds to finish; those that do not are cancelled
and their run records marked failed ("interrupted"). Log lines are JSON objects on stderr.

With ``APP_API_TOKEN`` set (DAPR's app API token), the trigger routes require ``dapr-api-token: <token>``.
"""

from pullctl.server.app import create_app
from pullctl.server.service import INTERRUPTED, PullService, check_exposure

__all__ = ["INTERRUPTED", "PullService", "check_exposure", "create_app"]
