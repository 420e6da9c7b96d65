"""Invalid configs and the exact located messages `pullctl validate` must print for them (file is case.yaml)."""

from __future__ import annotations

BASE = """\
source_id: weather-api
ingestion:
  schedule: "0 6 * * *"
  request:
    base_url: https://api.example.com/v1/forecast
"""

ITER = (
    BASE
    + """\
    parameters:
      latitude: "{region.latitude}"
  iteration:
    foreach: region
    source_mcp: plantation-mcp
    source_tool: list_active_regions
"""
)

SECRETS = BASE.replace(
    "  request:",
    """\
  secrets:
    dev_token: {secret_store: azure-kv, secret_key: google-ads-developer-token}
    client_id: {secret_store: kubernetes, secret_key: graph-client-id}
  request:""",
)

# auth_type oauth2 and session (SOURCES.md §6)
AUTH_BASE = """\
source_id: graph
ingestion:
  schedule: "0 6 * * *"
  secrets:
    cid: {secret_store: kubernetes, secret_key: graph-client-id}
    cs: {secret_store: kubernetes, secret_key: graph-client-secret}
    rt: {secret_store: kubernetes, secret_key: refresh-token}
  request:
    base_url: https://graph.example.com/v1.0/me
"""
OAUTH2 = (
    AUTH_BASE
    + """\
    auth_type: oauth2
    oauth2:
      token_url: https://login.example.com/token
"""
)
CC = OAUTH2 + "      client_id: '{secret.cid}'\n      client_secret: '{secret.cs}'\n"
SESSION = (
    AUTH_BASE
    + """\
    auth_type: session
    session:
      login: {url: https://bi.example.com/api/session, body: {username: me, password: '{secret.cs}'}}
"""
)
INC = BASE + "  records: {path: data}\n"
STATIC = (
    BASE.replace(
        "    base_url: https://api.example.com/v1/forecast\n",
        '    base_url: https://api.example.com/v1/forecast\n    parameters: {since: "{incremental.start}"}\n',
    )
    + "  records: {path: data}\n  iteration:\n    foreach: shop\n    items: [{id: a}, {id: b}]\n"
)

# (id, yaml text, target, expected issues as printed)
INVALID: list[tuple[str, str, str, list[str]]] = [
    (
        "yaml-syntax",
        "source_id: x\ningestion: [a, b\n",
        "k8s",
        ["case.yaml:3:1: YAML syntax error: while parsing a flow sequence did not find expected ',' or ']'"],
    ),
    (
        "empty-file",
        "",
        "k8s",
        ["case.yaml:1:1: the file is empty; expected a source config with source_id and ingestion"],
    ),
    (
        "top-level-list",
        "- a\n- b\n",
        "k8s",
        [
            "case.yaml:1:1: expected a source config (a mapping with source_id and ingestion) or a 'sources:' list,"
            " got a list"
        ],
    ),
    (
        "top-level-scalar",
        "hello\n",
        "k8s",
        [
            "case.yaml:1:1: expected a source config (a mapping with source_id and ingestion) or a 'sources:' list,"
            " got 'hello'"
        ],
    ),
    (
        "unknown-key",
        BASE.replace("    base_url", "    methd: GET\n    base_url"),
        "k8s",
        ["case.yaml:5:5: ingestion.request.methd: unknown field 'methd'; did you mean 'method'?"],
    ),
    (
        "unknown-key-no-hint",
        BASE + "  frobnicate: 1\n",
        "k8s",
        [
            "case.yaml:6:3: ingestion.frobnicate: unknown field 'frobnicate' (allowed: mode, schedule, timezone,"
            " deadline_seconds, secrets, request, records, iteration, pagination, response_actions, retry, rate_limit, dedup, events,"
            " window, incremental, response, job)"
        ],
    ),
    (
        "wrong-type",
        BASE + "  retry:\n    max_attempts: many\n",
        "k8s",
        [
            "case.yaml:7:19: ingestion.retry.max_attempts: must be a valid integer, unable to parse string as an"
            " integer (got 'many')"
        ],
    ),
    (
        "out-of-range",
        BASE + "  retry:\n    max_attempts: 11\n",
        "k8s",
        ["case.yaml:7:19: ingestion.retry.max_attempts: must be less than or equal to 10 (got 11)"],
    ),
    (
        "duplicate-key",
        BASE + "  retry:\n    max_attempts: 2\n    max_attempts: 3\n",
        "k8s",
        [
            "case.yaml:8:5: ingestion.retry.max_attempts: duplicate key 'max_attempts' (first defined at line 7)"
        ],
    ),
    (
        "source-id-not-dns",
        BASE.replace("weather-api", "Weather_API"),
        "k8s",
        [
            "case.yaml:1:12: source_id: must be a lower-case DNS label: a-z, 0-9 and '-', starting and ending"
            " alphanumeric (got 'Weather_API')"
        ],
    ),
    (
        "source-id-too-long",
        BASE.replace("weather-api", "a" * 41),
        "k8s",
        [
            "case.yaml:1:12: source_id: must have at most 40 characters (the CronJob name pull-<source_id> must fit"
            f" in 52) (got '{'a' * 41}')"
        ],
    ),
    (
        "cron-4-fields",
        BASE.replace('"0 6 * * *"', '"0 6 * *"'),
        "k8s",
        [
            "case.yaml:3:13: ingestion.schedule: '0 6 * *' has 4 fields; a cron schedule has 5 (minute hour"
            " day-of-month month day-of-week), e.g. '0 6 * * *'"
        ],
    ),
    (
        "cron-bad-value",
        BASE.replace('"0 6 * * *"', '"0 25 * * *"'),
        "k8s",
        ["case.yaml:3:13: ingestion.schedule: '0 25 * * *' is not a valid cron schedule: Bad hour"],
    ),
    (
        "cron-6-fields-k8s",
        BASE.replace('"0 6 * * *"', '"0 0 6 * * *"'),
        "k8s",
        [
            "case.yaml:3:13: ingestion.schedule: '0 0 6 * * *' has 6 fields (seconds first), which only DAPR Jobs"
            " understand; Kubernetes takes 5 fields (minute hour day-of-month month day-of-week), or validate with"
            " --target dapr and deploy with 'pullctl jobs sync'"
        ],
    ),
    (
        "every-k8s",
        BASE.replace('"0 6 * * *"', '"@every 1h30m"'),
        "k8s",
        [
            "case.yaml:3:13: ingestion.schedule: '@every 1h30m' is understood only by DAPR Jobs; use a 5-field cron"
            " for Kubernetes CronJobs, or validate with --target dapr and deploy with 'pullctl jobs sync'"
        ],
    ),
    (
        "every-bad-duration-dapr",
        BASE.replace('"0 6 * * *"', '"@every soon"'),
        "dapr",
        ["case.yaml:3:13: ingestion.schedule: 'soon' is not a duration like 30s, 15m, 1h30m"],
    ),
    (
        "unknown-macro",
        BASE.replace('"0 6 * * *"', "'@fortnightly'"),
        "k8s",
        [
            "case.yaml:3:13: ingestion.schedule: unknown macro '@fortnightly'; use one of @yearly, @annually,"
            " @monthly, @weekly, @daily, @midnight, @hourly or a 5-field cron"
        ],
    ),
    (
        "bad-timezone",
        BASE.replace("  request:", "  timezone: Mars/Olympus\n  request:"),
        "k8s",
        [
            "case.yaml:4:13: ingestion.timezone: unknown time zone 'Mars/Olympus'; use an IANA name such as"
            " Etc/UTC or Europe/Berlin"
        ],
    ),
    (
        "unknown-template-variable",
        ITER.replace("{region.latitude}", "{regoin.latitude}"),
        "k8s",
        [
            "case.yaml:6:5: ingestion.request.parameters: template '{regoin.latitude}' names unknown variable"
            " 'regoin' (known: region, run, secret, source, window); did you mean '{region.latitude}'?"
        ],
    ),
    (
        "bad-window-field",
        ITER.replace("{region.latitude}", "{window.begin}"),
        "k8s",
        [
            "case.yaml:6:5: ingestion.request.parameters: template '{window.begin}': window has the fields start,"
            " end"
        ],
    ),
    (
        "api-key-without-secret",
        BASE + "    auth_type: api_key\n",
        "k8s",
        ["case.yaml:4:3: ingestion.request.secret_store: required when auth_type is api_key"],
    ),
    (
        "bearer-without-key",
        BASE + "    auth_type: bearer\n    secret_store: vault\n",
        "k8s",
        ["case.yaml:4:3: ingestion.request.secret_key: required when auth_type is bearer"],
    ),
    (
        "items-and-mcp",
        ITER + "    items: [{id: 1}]\n",
        "k8s",
        [
            "case.yaml:12:12: ingestion.iteration.items: set one of source_mcp/source_tool (an MCP tool),"
            " items (a static list) or from_source (another source's records), not source_mcp and items"
        ],
    ),
    (
        "items-not-mappings",
        BASE + "  iteration:\n    foreach: x\n    items: [{id: a}, 5, [x]]\n",
        "k8s",
        [
            "case.yaml:8:22: ingestion.iteration.items[1]: must be a valid dictionary (got 5)",
            "case.yaml:8:25: ingestion.iteration.items[2]: must be a valid dictionary (got a list)",
        ],
    ),
    (
        "items-block-scalar",
        BASE + "  iteration:\n    foreach: x\n    items:\n      - id: a\n      - plain\n",
        "k8s",
        ["case.yaml:10:9: ingestion.iteration.items[1]: must be a valid dictionary (got 'plain')"],
    ),
    (
        "items-a-mapping",
        BASE + "  iteration:\n    foreach: x\n    items: {id: a}\n",
        "k8s",
        ["case.yaml:8:12: ingestion.iteration.items: must be a valid list (got a mapping)"],
    ),
    (
        "neither-items-nor-mcp",
        BASE + "  iteration:\n    foreach: region\n",
        "k8s",
        [
            "case.yaml:6:3: ingestion.iteration.source_mcp: set source_mcp and source_tool (an MCP tool), items"
            " (a static list), or from_source (another source's records)"
        ],
    ),
    (
        "concurrency-zero",
        ITER + "    concurrency: 0\n",
        "k8s",
        ["case.yaml:12:18: ingestion.iteration.concurrency: must be greater than or equal to 1 (got 0)"],
    ),
    (
        "concurrency-too-high",
        ITER + "    concurrency: 257\n",
        "k8s",
        ["case.yaml:12:18: ingestion.iteration.concurrency: must be less than or equal to 256 (got 257)"],
    ),
    (
        "missing-source-id",
        BASE.replace("source_id: weather-api\n", ""),
        "k8s",
        ["case.yaml:1:1: source_id: 'source_id' is required"],
    ),
    (
        "missing-request",
        "source_id: x\ningestion:\n  schedule: '@daily'\n",
        "k8s",
        ["case.yaml:2:1: ingestion.request: required for mode scheduled_pull"],
    ),
    (
        "missing-base-url",
        "source_id: x\ningestion:\n  schedule: '@daily'\n  request:\n    method: GET\n",
        "k8s",
        ["case.yaml:4:3: ingestion.request.base_url: 'base_url' is required"],
    ),
    (
        "host-from-template",
        BASE.replace("https://api.example.com/v1/forecast", "https://{source.id}/x"),
        "k8s",
        [
            "case.yaml:5:15: ingestion.request.base_url: must be an absolute http(s) URL with a literal host, e.g."
            " https://api.example.com/v1 (got 'https://{source.id}/x')"
        ],
    ),
    (
        "pagination-field-of-other-type",
        BASE + "  pagination:\n    type: offset\n    cursor_path: next\n",
        "k8s",
        ["case.yaml:8:18: ingestion.pagination.cursor_path: applies to pagination type cursor, not offset"],
    ),
    (
        "cursor-without-path",
        BASE + "  pagination:\n    type: cursor\n",
        "k8s",
        [
            "case.yaml:6:3: ingestion.pagination.cursor_path: required for cursor pagination: where the next cursor"
            " is in the response"
        ],
    ),
    (
        "unclosed-brace",
        BASE.replace("/forecast", "/{source.id"),
        "k8s",
        [
            "case.yaml:5:15: ingestion.request.base_url: unmatched '{' at position 27 in"
            " 'https://api.example.com/v1/{source.id' (write '{{' for a literal brace)"
        ],
    ),
    (
        "retry-delays",
        BASE + "  retry:\n    initial_delay_seconds: 10\n    max_delay_seconds: 5\n",
        "k8s",
        ["case.yaml:8:24: ingestion.retry.max_delay_seconds: must be at least initial_delay_seconds (10)"],
    ),
    (
        "parameter-list",
        BASE + "    parameters: {x: [1, 2]}\n",
        "k8s",
        [
            "case.yaml:6:21: ingestion.request.parameters.x: must be a string, an integer, a number or a boolean"
            " (got a list)"
        ],
    ),
    (
        "sources-not-list",
        "sources: {a: 1}\n",
        "k8s",
        ["case.yaml:1:10: sources: must be a list of source configs (got a mapping)"],
    ),
    (
        "sources-with-other-key",
        "sources: []\nextra: 1\n",
        "k8s",
        ["case.yaml:2:1: extra: a file with 'sources:' holds nothing else at the top level"],
    ),
    (
        "error-in-second-of-list",
        "sources:\n  - source_id: a\n    ingestion: {schedule: '@daily', request: {base_url: 'http://x/'}}\n"
        "  - source_id: b\n    ingestion: {schedule: '@daily', request: {base_url: 'http://x/', method: PUT}}\n",
        "k8s",
        ["case.yaml:5:78: sources[1].ingestion.request.method: must be 'GET' or 'POST' (got 'PUT')"],
    ),
    (
        "typo-top-level",
        BASE.replace("ingestion:", "ingestoin:"),
        "k8s",
        [
            "case.yaml:1:1: ingestion: 'ingestion' is required",
            "case.yaml:2:1: ingestoin: unknown field 'ingestoin'; did you mean 'ingestion'?",
        ],
    ),
    (
        "several-errors-one-pass",
        BASE
        + "  retry:\n    max_attempts: 0\n    backoff: linear\n  rate_limit:\n    requests_per_second: -1\n",
        "k8s",
        [
            "case.yaml:7:19: ingestion.retry.max_attempts: must be greater than or equal to 1 (got 0)",
            "case.yaml:8:14: ingestion.retry.backoff: must be 'exponential' or 'fixed' (got 'linear')",
            "case.yaml:10:26: ingestion.rate_limit.requests_per_second: must be greater than 0 (got -1)",
        ],
    ),
    (
        "undefined-alias",
        BASE + "  retry: *defaults\n",
        "k8s",
        ["case.yaml:6:10: ingestion.retry: undefined alias '*defaults' (no '&defaults' before it)"],
    ),
    (
        "billion-laughs",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
        ),
        "k8s",
        ["case.yaml:5:36: e[7]: aliases expand to more than 100,000 values; refused"],
    ),
    (
        "merge-key-not-a-mapping",
        "sources:\n  - <<: [1, 2]\n    source_id: a\n",
        "k8s",
        [
            "case.yaml:2:5: sources[0].<<: a merge key '<<' takes a mapping or a list of mappings (got 1)",
            "case.yaml:2:5: sources[0].<<: a merge key '<<' takes a mapping or a list of mappings (got 2)",
        ],
    ),
    (
        "complex-key-and-its-value-skipped",
        BASE + "  ? [a, b]\n  : {x: 1}\n  retry: {max_attempts: 0}\n",
        "k8s",
        ["case.yaml:6:5: ingestion: a key must be a plain scalar"],
    ),
    (
        "duplicate-key-with-a-block-value",
        BASE + "  retry: {max_attempts: 2}\n  retry:\n    max_attempts: 3\n    backoff: [fixed]\n",
        "k8s",
        ["case.yaml:7:3: ingestion.retry: duplicate key 'retry' (first defined at line 6)"],
    ),
    (
        "malformed-paths",
        ITER
        + "    items_path: data..list\n"
        + "  pagination:\n    type: next_url\n    next_url_path: /links~2next\n"
        + "  dedup:\n    ignore_fields: [meta., generated]\n",
        "k8s",
        [
            "case.yaml:12:17: ingestion.iteration.items_path: 'data..list' has an empty segment; for a key that"
            " holds a dot use a JSON Pointer such as '/data..list'",
            "case.yaml:15:20: ingestion.pagination.next_url_path: '/links~2next' is not a valid JSON Pointer: '~'"
            " must be followed by 0 (for '~') or 1 (for '/')",
            "case.yaml:17:21: ingestion.dedup.ignore_fields[0]: 'meta.' has an empty segment; for a key that holds a"
            " dot use a JSON Pointer such as '/meta.'",
        ],
    ),
    (
        "records-alias-disagrees",
        BASE
        + "  records: {path: data}\n  pagination:\n    type: page_number\n    stop_when_empty_path: items\n",
        "k8s",
        [
            "case.yaml:9:27: ingestion.pagination.stop_when_empty_path: is an alias of records.path, which says"
            " 'data': keep records.path only"
        ],
    ),
    (
        "from-source-and-items",
        BASE + "  iteration:\n    foreach: x\n    items: [{id: 1}]\n    from_source: parent\n",
        "k8s",
        [
            "case.yaml:9:18: ingestion.iteration.from_source: set one of source_mcp/source_tool (an MCP tool), items"
            " (a static list) or from_source (another source's records), not items and from_source"
        ],
    ),
    (
        "batch-of-one",
        BASE + "  iteration:\n    foreach: x\n    items: [{id: 1}]\n    batch: {size: 1}\n",
        "k8s",
        ["case.yaml:9:19: ingestion.iteration.batch.size: must be greater than or equal to 2 (got 1)"],
    ),
    (
        "secret-undeclared-did-you-mean",
        SECRETS + "    headers: {developer-token: '{secret.dev_tokn}'}\n",
        "k8s",
        [
            "case.yaml:9:14: ingestion.request.headers: template '{secret.dev_tokn}' names undeclared secret"
            " 'dev_tokn' (declared in ingestion.secrets: client_id, dev_token); did you mean '{secret.dev_token}'?"
        ],
    ),
    (
        "secret-none-declared",
        BASE + "    parameters: {key: '{secret.client_id}'}\n",
        "k8s",
        [
            "case.yaml:6:17: ingestion.request.parameters: template '{secret.client_id}' names undeclared secret"
            " 'client_id'; declare it in ingestion.secrets as client_id: {secret_store: STORE, secret_key: KEY}"
        ],
    ),
    (
        "secret-without-a-name",
        SECRETS + "    method: POST\n    body: {token: '{secret}'}\n",
        "k8s",
        [
            "case.yaml:10:11: ingestion.request.body: template '{secret}': write {secret.NAME}, NAME one of"
            " ingestion.secrets (client_id, dev_token)"
        ],
    ),
    (
        "secret-in-base-url",
        SECRETS.replace("v1/forecast", "v1/{secret.client_id}/forecast"),
        "k8s",
        [
            "case.yaml:8:15: ingestion.request.base_url: template '{secret.client_id}': a secret cannot go into"
            " request.base_url: the URL path is stored with every document and shown in logs; send the secret as"
            " a query parameter (request.parameters) or a header (request.headers), where it is masked"
        ],
    ),
    (
        "secret-in-linkage",
        SECRETS
        + "  iteration:\n    foreach: region\n    items: [{id: 1}]\n    linkage: {t: '{secret.dev_token}'}\n",
        "k8s",
        [
            "case.yaml:12:14: ingestion.iteration.linkage: template '{secret.dev_token}': a secret cannot go into"
            " iteration.linkage: linkage is stored in plain text with every document"
        ],
    ),
    (
        "secret-as-foreach",
        BASE + "  iteration:\n    foreach: secret\n    items: [{id: 1}]\n",
        "k8s",
        [
            "case.yaml:7:14: ingestion.iteration.foreach: 'secret' is a built-in variable (window, run, source,"
            " secret); pick another name"
        ],
    ),
    (
        "secret-name-not-an-identifier",
        SECRETS.replace("    dev_token:", "    dev-token:"),
        "k8s",
        [
            "case.yaml:5:5: ingestion.secrets.dev-token: a secret's name must be an identifier (letters, digits"
            " and _, not starting with a digit), as written in {secret.NAME} (got 'dev-token')"
        ],
    ),
    (
        "secret-entry-misspelt-and-incomplete",
        SECRETS.replace("{secret_store: azure-kv,", "{secret_stor: azure-kv,").replace(
            "secret_key: graph-client-id", "secret_key: ''"
        ),
        "k8s",
        [
            "case.yaml:5:5: ingestion.secrets.dev_token.secret_store: 'secret_store' is required",
            "case.yaml:5:17: ingestion.secrets.dev_token.secret_stor: unknown field 'secret_stor'; did you mean"
            " 'secret_store'?",
            "case.yaml:6:55: ingestion.secrets.client_id.secret_key: must have at least 1 character (got '')",
        ],
    ),
    (
        "raw-parameters-that-break-the-query",
        BASE + "    raw_parameters: {search: 'a&b'}\n",
        "k8s",
        [
            "case.yaml:6:21: ingestion.request.raw_parameters: search='a&b' holds a character that would break the"
            " query (& # = space)"
        ],
    ),
    (
        "graphql-and-body",
        BASE + "    method: POST\n    body: {a: 1}\n    graphql: {query: 'query { x }'}\n",
        "k8s",
        [
            "case.yaml:7:11: ingestion.request.body: graphql is the body (a POST of its query and variables): set one"
        ],
    ),
    (
        "page-size-body-path-without-body",
        BASE + "  pagination: {type: offset, page_size_body_path: size}\n",
        "k8s",
        ["case.yaml:6:51: ingestion.pagination.page_size_body_path: applies with inject: body"],
    ),
    (
        "remaining-header-without-reset",
        BASE + "  rate_limit: {remaining_header: X-RateLimit-Remaining}\n",
        "k8s",
        [
            "case.yaml:6:3: ingestion.rate_limit.reset_header: required with remaining_header: when the budget"
            " comes back"
        ],
    ),
    # -- auth_type oauth2 and session
    (
        "oauth2-without-block",
        AUTH_BASE + "    auth_type: oauth2\n",
        "k8s",
        ["case.yaml:8:3: ingestion.request.oauth2: required when auth_type is oauth2"],
    ),
    (
        "oauth2-block-with-bearer",
        CC.replace("auth_type: oauth2", "auth_type: bearer\n    secret_store: vault\n    secret_key: k")
        + "      grant: client_credentials\n",
        "k8s",
        ["case.yaml:13:5: ingestion.request.oauth2: applies with auth_type: oauth2, not bearer"],
    ),
    (
        "oauth2-with-secret-key",
        CC.replace("    oauth2:\n", "    secret_store: vault\n    oauth2:\n")
        + "      grant: client_credentials\n",
        "k8s",
        [
            "case.yaml:11:19: ingestion.request.secret_store: auth_type oauth2 takes its credentials from {secret.NAME} in request.oauth2 (declared in ingestion.secrets), not secret_store"
        ],
    ),
    (
        "oauth2-grant-missing",
        CC,
        "k8s",
        ["case.yaml:11:5: ingestion.request.oauth2.grant: 'grant' is required"],
    ),
    (
        "oauth2-grant-unknown",
        CC + "      grant: password\n",
        "k8s",
        [
            "case.yaml:15:14: ingestion.request.oauth2.grant: must be 'client_credentials', 'refresh_token' or 'jwt_bearer' (got 'password')"
        ],
    ),
    (
        "oauth2-token-url-templated",
        CC.replace("https://login.example.com/token", "'https://{secret.cid}.example.com/token'")
        + "      grant: client_credentials\n",
        "k8s",
        [
            "case.yaml:12:18: ingestion.request.oauth2.token_url: must be a literal absolute http(s) URL, no templates (got 'https://{secret.cid}.example.com/token')"
        ],
    ),
    (
        "oauth2-token-url-relative",
        CC.replace("https://login.example.com/token", "/token") + "      grant: client_credentials\n",
        "k8s",
        [
            "case.yaml:12:18: ingestion.request.oauth2.token_url: must be a literal absolute http(s) URL, no templates (got '/token')"
        ],
    ),
    (
        "client-credentials-without-secret",
        OAUTH2 + "      grant: client_credentials\n      client_id: '{secret.cid}'\n",
        "k8s",
        ["case.yaml:11:5: ingestion.request.oauth2.client_secret: required for grant client_credentials"],
    ),
    (
        "refresh-grant-without-token",
        CC + "      grant: refresh_token\n",
        "k8s",
        ["case.yaml:11:5: ingestion.request.oauth2.refresh_token: required for grant refresh_token"],
    ),
    (
        "refresh-token-on-client-credentials",
        CC + "      grant: client_credentials\n      refresh_token: '{secret.rt}'\n",
        "k8s",
        [
            "case.yaml:16:22: ingestion.request.oauth2.refresh_token: applies to grant refresh_token, not client_credentials"
        ],
    ),
    (
        "rotation-on-client-credentials",
        CC + "      grant: client_credentials\n      rotation: false\n",
        "k8s",
        [
            "case.yaml:16:17: ingestion.request.oauth2.rotation: applies to grant refresh_token, not client_credentials"
        ],
    ),
    (
        "jwt-bearer-without-jwt",
        OAUTH2 + "      grant: jwt_bearer\n",
        "k8s",
        ["case.yaml:11:5: ingestion.request.oauth2.jwt: required for grant jwt_bearer"],
    ),
    (
        "jwt-on-refresh-grant",
        CC
        + "      grant: refresh_token\n      refresh_token: '{secret.rt}'\n      jwt: {private_key: '{secret.cs}'}\n",
        "k8s",
        ["case.yaml:17:12: ingestion.request.oauth2.jwt: applies to grant jwt_bearer, not refresh_token"],
    ),
    (
        "jwt-algorithm",
        OAUTH2 + "      grant: jwt_bearer\n      jwt: {private_key: '{secret.cs}', algorithm: HS256}\n",
        "k8s",
        ["case.yaml:14:52: ingestion.request.oauth2.jwt.algorithm: must be 'RS256' or 'ES256' (got 'HS256')"],
    ),
    (
        "jwt-lifetime",
        OAUTH2 + "      grant: jwt_bearer\n      jwt: {private_key: '{secret.cs}', lifetime_seconds: 10}\n",
        "k8s",
        [
            "case.yaml:14:59: ingestion.request.oauth2.jwt.lifetime_seconds: must be greater than or equal to 60 (got 10)"
        ],
    ),
    (
        "jwt-key-literal",
        OAUTH2 + "      grant: jwt_bearer\n      jwt: {private_key: '-----BEGIN PRIVATE KEY-----'}\n",
        "k8s",
        [
            "case.yaml:14:26: ingestion.request.oauth2.jwt.private_key: a credential is not written in the config: declare it in ingestion.secrets and write {secret.NAME} here (got a value of 27 characters)"
        ],
    ),
    (
        "jwt-claims-item-template",
        OAUTH2
        + "      grant: jwt_bearer\n      jwt: {private_key: '{secret.cs}', claims: {sub: '{window.start}'}}\n",
        "k8s",
        [
            "case.yaml:14:49: ingestion.request.oauth2.jwt.claims: template '{window.start}': the auth blocks take {secret.NAME} only (one token serves the whole run)"
        ],
    ),
    (
        "client-secret-literal",
        OAUTH2
        + "      grant: client_credentials\n      client_id: '{secret.cid}'\n      client_secret: hunter2\n",
        "k8s",
        [
            "case.yaml:15:22: ingestion.request.oauth2.client_secret: a credential is not written in the config: declare it in ingestion.secrets and write {secret.NAME} here (got a value of 7 characters)"
        ],
    ),
    (
        "client-secret-undeclared",
        OAUTH2
        + "      grant: client_credentials\n      client_id: '{secret.cid}'\n      client_secret: '{secret.client_secret}'\n",
        "k8s",
        [
            "case.yaml:15:22: ingestion.request.oauth2.client_secret: template '{secret.client_secret}' names undeclared secret 'client_secret' (declared in ingestion.secrets: cid, cs, rt)"
        ],
    ),
    (
        "client-auth-basic-without-secret",
        OAUTH2
        + "      grant: refresh_token\n      refresh_token: '{secret.rt}'\n      client_id: '{secret.cid}'\n      client_auth: basic\n",
        "k8s",
        ["case.yaml:11:5: ingestion.request.oauth2.client_secret: required with client_auth: basic"],
    ),
    (
        "client-auth-unknown",
        CC + "      grant: client_credentials\n      client_auth: header\n",
        "k8s",
        ["case.yaml:16:20: ingestion.request.oauth2.client_auth: must be 'body' or 'basic' (got 'header')"],
    ),
    (
        "extra-params-grant-type",
        CC + "      grant: client_credentials\n      extra_params: {grant_type: password}\n",
        "k8s",
        [
            "case.yaml:16:21: ingestion.request.oauth2.extra_params: grant_type is set by pullctl from grant/scopes/jwt"
        ],
    ),
    (
        "extra-params-client-secret",
        CC + "      grant: client_credentials\n      extra_params: {client_secret: x}\n",
        "k8s",
        [
            "case.yaml:16:21: ingestion.request.oauth2.extra_params: client_secret has its own field: set oauth2.client_secret"
        ],
    ),
    (
        "token-path-bad",
        CC + "      grant: client_credentials\n      token_path: 'a..b'\n",
        "k8s",
        [
            "case.yaml:16:19: ingestion.request.oauth2.token_path: 'a..b' has an empty segment; for a key that holds a dot use a JSON Pointer such as '/a..b'"
        ],
    ),
    (
        "expires-in-path-bad",
        CC + "      grant: client_credentials\n      expires_in_path: 'a..b'\n",
        "k8s",
        [
            "case.yaml:16:24: ingestion.request.oauth2.expires_in_path: 'a..b' has an empty segment; for a key that holds a dot use a JSON Pointer such as '/a..b'"
        ],
    ),
    (
        "scopes-not-list",
        CC + "      grant: client_credentials\n      scopes: 5\n",
        "k8s",
        ["case.yaml:16:15: ingestion.request.oauth2.scopes: must be a valid list (got 5)"],
    ),
    (
        "oauth2-unknown-field",
        CC + "      grant: client_credentials\n      tokenurl: x\n",
        "k8s",
        [
            "case.yaml:16:7: ingestion.request.oauth2.tokenurl: unknown field 'tokenurl'; did you mean 'token_url'?"
        ],
    ),
    (
        "session-without-block",
        AUTH_BASE + "    auth_type: session\n",
        "k8s",
        ["case.yaml:8:3: ingestion.request.session: required when auth_type is session"],
    ),
    (
        "session-header-and-param",
        SESSION + "      token_path: id\n      header: X-Session-Token\n      param: session\n",
        "k8s",
        [
            "case.yaml:15:14: ingestion.request.session.param: set header or param, not both: the token goes in one place"
        ],
    ),
    (
        "session-neither-header-nor-param",
        SESSION + "      token_path: id\n",
        "k8s",
        [
            "case.yaml:11:5: ingestion.request.session.header: set header (e.g. X-Session-Token) or param: where the token goes"
        ],
    ),
    (
        "session-without-token-path",
        SESSION + "      header: X-Session-Token\n",
        "k8s",
        ["case.yaml:11:5: ingestion.request.session.token_path: 'token_path' is required"],
    ),
    (
        "session-ttl",
        SESSION + "      token_path: id\n      header: X-Session-Token\n      ttl_seconds: 0\n",
        "k8s",
        [
            "case.yaml:15:20: ingestion.request.session.ttl_seconds: must be greater than or equal to 1 (got 0)"
        ],
    ),
    (
        "session-login-url",
        SESSION.replace("https://bi.example.com/api/session", "bi.example.com")
        + "      token_path: id\n      header: X-Session-Token\n",
        "k8s",
        [
            "case.yaml:12:20: ingestion.request.session.login.url: must be a literal absolute http(s) URL, no templates (got 'bi.example.com')"
        ],
    ),
    (
        "session-login-get-body",
        SESSION.replace("{url:", "{method: GET, url:")
        + "      token_path: id\n      header: X-Session-Token\n",
        "k8s",
        ["case.yaml:12:75: ingestion.request.session.login.body: a body needs method: POST"],
    ),
    (
        "session-login-page-template",
        SESSION.replace("password: '{secret.cs}'", "password: '{page.number}'")
        + "      token_path: id\n      header: X-Session-Token\n",
        "k8s",
        [
            "case.yaml:12:62: ingestion.request.session.login.body: template '{page.number}': the auth blocks take {secret.NAME} only (one token serves the whole run)"
        ],
    ),
    (
        "session-block-with-oauth2",
        CC
        + "      grant: client_credentials\n    session: {token_path: id, header: X, login: {url: 'https://x.example.com/'}}\n",
        "k8s",
        ["case.yaml:16:14: ingestion.request.session: applies with auth_type: session, not oauth2"],
    ),
    # --- incremental (issue 16): window.since, incremental, {incremental.start} ---
    (
        "window-unknown-since",
        BASE + "  window: {since: yesterday}\n",
        "k8s",
        ["case.yaml:6:19: ingestion.window.since: must be 'ticks' or 'last_success' (got 'yesterday')"],
    ),
    (
        "window-field-with-ticks",
        BASE + "  window: {step: 7d}\n",
        "k8s",
        [
            "case.yaml:6:18: ingestion.window.step: applies with since: last_success (since: ticks covers the schedule interval)"
        ],
    ),
    (
        "window-bad-span",
        BASE + "  window: {since: last_success, step: 7 days}\n",
        "k8s",
        ["case.yaml:6:39: ingestion.window.step: '7 days' is not a span like 7d, 1d12h, 6h, 30m or 90s"],
    ),
    (
        "window-zero-span",
        BASE + "  window: {since: last_success, lag: 0d}\n",
        "k8s",
        ["case.yaml:6:38: ingestion.window.lag: the span '0d' must be longer than zero"],
    ),
    (
        "window-bad-initial",
        BASE + "  window: {since: last_success, initial: soon}\n",
        "k8s",
        [
            "case.yaml:6:42: ingestion.window.initial: must be an ISO-8601 date or date-time, e.g. 2024-01-01 or 2024-01-01T00:00:00Z (got 'soon')"
        ],
    ),
    (
        "window-max-span-under-lookback",
        BASE + "  window: {since: last_success, lookback: 2d, max_span: 1d}\n",
        "k8s",
        [
            "case.yaml:6:57: ingestion.window.max_span: must be longer than lookback (2d), or a run never gets further"
        ],
    ),
    (
        "incremental-neither",
        INC + "  incremental: {initial_value: 0}\n",
        "k8s",
        [
            "case.yaml:7:3: ingestion.incremental.cursor_path: set cursor_path (a field of each record, e.g. updated_at) or token_path (a sync token in the last page)"
        ],
    ),
    (
        "incremental-both",
        INC + "  incremental: {cursor_path: updated_at, token_path: sync}\n",
        "k8s",
        [
            "case.yaml:7:54: ingestion.incremental.token_path: set cursor_path (the highest value of a record field) or token_path (a sync token), not both"
        ],
    ),
    (
        "incremental-bad-path",
        INC + "  incremental: {cursor_path: 'a..b'}\n",
        "k8s",
        [
            "case.yaml:7:30: ingestion.incremental.cursor_path: 'a..b' has an empty segment; for a key that holds a dot use a JSON Pointer such as '/a..b'"
        ],
    ),
    (
        "incremental-cursor-without-records",
        BASE + "  incremental: {cursor_path: updated_at}\n",
        "k8s",
        [
            "case.yaml:6:30: ingestion.incremental.cursor_path: reads a field of each record: set records.path to where a page's records are (records: {} when each page is a list)"
        ],
    ),
    (
        "incremental-bool-initial",
        INC + "  incremental: {cursor_path: updated_at, initial_value: true}\n",
        "k8s",
        [
            "case.yaml:7:57: ingestion.incremental.initial_value: must be a text, a number or a date (got True)"
        ],
    ),
    (
        "incremental-per-item-without-iteration",
        INC + "  incremental: {cursor_path: updated_at, per_item: true}\n",
        "k8s",
        ["case.yaml:7:52: ingestion.incremental.per_item: needs iteration: without items there is one state"],
    ),
    (
        "incremental-per-item-with-batch",
        STATIC + "    batch: {size: 2}\n  incremental: {cursor_path: updated_at}\n",
        "k8s",
        [
            "case.yaml:12:3: ingestion.incremental.per_item: iteration.batch fetches several items in one request, which cannot each send their own state: set per_item: false (one state for the source)"
        ],
    ),
    (
        "incremental-source-state-with-shards",
        STATIC + "    shards: 2\n  incremental: {cursor_path: updated_at, per_item: false}\n",
        "k8s",
        [
            "case.yaml:12:52: ingestion.incremental.per_item: with iteration.shards each pod fetches a share of the items, and one state for the source would move past the other pods' items: keep per_item: true"
        ],
    ),
    (
        "incremental-source-token-with-iteration",
        STATIC + "  incremental: {token_path: sync, per_item: false}\n",
        "k8s",
        [
            "case.yaml:11:45: ingestion.incremental.per_item: a sync token belongs to the item whose pages carried it: keep per_item: true with token_path"
        ],
    ),
    (
        "incremental-expired-status-range",
        INC + "  incremental: {token_path: sync, expired_status: [200]}\n",
        "k8s",
        [
            "case.yaml:7:52: ingestion.incremental.expired_status[0]: must be greater than or equal to 400 (got 200)"
        ],
    ),
    (
        "incremental-start-without-incremental",
        BASE.replace(
            "    base_url: https://api.example.com/v1/forecast\n",
            '    base_url: https://api.example.com/v1/forecast\n    parameters: {since: "{incremental.start}"}\n',
        ),
        "k8s",
        [
            "case.yaml:6:17: ingestion.request.parameters: template '{incremental.start}' needs ingestion.incremental (cursor_path or token_path): the state it starts from"
        ],
    ),
    (
        "incremental-start-in-base-url",
        BASE.replace("forecast\n", "forecast/{incremental.start}\n")
        + "  records: {path: data}\n  incremental: {cursor_path: updated_at}\n",
        "k8s",
        [
            "case.yaml:5:15: ingestion.request.base_url: template '{incremental.start}': the state goes in request.parameters, headers or body, where a value with no state yet is left out"
        ],
    ),
    (
        "incremental-start-bad-format",
        BASE.replace(
            "    base_url: https://api.example.com/v1/forecast\n",
            '    base_url: https://api.example.com/v1/forecast\n    parameters: {since: "{incremental.start:epochs}"}\n',
        )
        + "  records: {path: data}\n  incremental: {cursor_path: updated_at}\n",
        "k8s",
        [
            "case.yaml:6:17: ingestion.request.parameters: template '{incremental.start:epochs}': format 'epochs' is not epoch, epoch_ms or a strftime pattern (such as %Y-%m-%dT%H:%M:%SZ)"
        ],
    ),
    (
        "incremental-start-bad-field",
        BASE.replace(
            "    base_url: https://api.example.com/v1/forecast\n",
            '    base_url: https://api.example.com/v1/forecast\n    parameters: {since: "{incremental.end}"}\n',
        )
        + "  records: {path: data}\n  incremental: {cursor_path: updated_at}\n",
        "k8s",
        [
            "case.yaml:6:17: ingestion.request.parameters: template '{incremental.end}': incremental has the fields start"
        ],
    ),
    (
        "foreach-incremental",
        ITER.replace("foreach: region", "foreach: incremental"),
        "k8s",
        [
            "case.yaml:6:5: ingestion.request.parameters: template '{region.latitude}' names unknown variable 'region' (known: incremental, run, secret, source, window)",
            "case.yaml:9:14: ingestion.iteration.foreach: 'incremental' is the incremental state's variable ({incremental.start}); pick another name",
        ],
    ),
]

# -- reports (issue 17): response formats and jobs
JOB = """\
source_id: exports
ingestion:
  schedule: "0 6 * * *"
  request: {auth_type: bearer, secret_store: kubernetes, secret_key: token}
  response: {format: csv}
  job:
    create: {url: "https://api.example.com/v3/exports", body: {type: contacts}}
    id_path: id
    poll: {url: "https://api.example.com/v3/exports/{job.id}", every_seconds: 30, timeout_seconds: 600}
    status_path: status
    done: [ready]
    download: {url_path: urls}
"""

INVALID += [
    (
        "response-csv-with-json",
        BASE + "  response: {format: json, csv: {delimiter: ';'}}\n",
        "k8s",
        ["case.yaml:6:33: ingestion.response.csv: applies to format csv or tsv, not json"],
    ),
    (
        "response-format-unknown",
        BASE + "  response: {format: parquet}\n",
        "k8s",
        [
            "case.yaml:6:22: ingestion.response.format: must be 'json', 'jsonl', 'csv', 'tsv' or 'xml' (got 'parquet')"
        ],
    ),
    (
        "csv-records-path",
        BASE + "  response: {format: csv}\n  records: {path: data}\n",
        "k8s",
        [
            "case.yaml:7:19: ingestion.records.path: csv rows are the records: records.path applies to json and xml"
        ],
    ),
    (
        "csv-next-url",
        BASE + "  response: {format: csv}\n  pagination: {type: next_url, next_url_path: next}\n",
        "k8s",
        [
            "case.yaml:7:22: ingestion.pagination.type: reads a JSON body, and a csv body has none: use none, page_number, offset, link_header, or cursor with cursor_from header or last_record"
        ],
    ),
    (
        "jsonl-cursor-body",
        BASE + "  response: {format: jsonl}\n  pagination: {type: cursor, cursor_path: next}\n",
        "k8s",
        [
            "case.yaml:7:3: ingestion.pagination.cursor_from: reads a JSON body, and a jsonl body has none: use none, page_number, offset, link_header, or cursor with cursor_from header or last_record"
        ],
    ),
    (
        "csv-has-more",
        BASE + "  response: {format: csv}\n  pagination: {type: link_header, has_more_path: more}\n",
        "k8s",
        ["case.yaml:7:50: ingestion.pagination.has_more_path: reads a JSON body, and a csv body has none"],
    ),
    (
        "json-max-bytes",
        BASE + "    max_response_bytes: 2000000000\n",
        "k8s",
        [
            "case.yaml:6:25: ingestion.request.max_response_bytes: at most 1073741824 (1 GiB) for a body held in memory (json); only jsonl, csv and tsv rows with records.split stream, and take more"
        ],
    ),
    (
        "job-base-url",
        JOB.replace("request: {auth_type", "request: {base_url: 'https://api.example.com', auth_type"),
        "k8s",
        [
            "case.yaml:4:23: ingestion.request.base_url: not used with job: the calls are job.create.url and job.poll.url"
        ],
    ),
    (
        "job-pagination",
        JOB + "  pagination: {type: page_number}\n",
        "k8s",
        [
            "case.yaml:13:22: ingestion.pagination.type: a job's downloads are its pages: use pagination with no job"
        ],
    ),
    (
        "job-poll-timeout",
        JOB.replace("timeout_seconds: 600", "timeout_seconds: 7200"),
        "k8s",
        [
            "case.yaml:9:100: ingestion.job.poll.timeout_seconds: 7200 is longer than deadline_seconds (3600): the run would be stopped first; raise deadline_seconds"
        ],
    ),
    (
        "job-id-in-create",
        JOB.replace('v3/exports", body', 'v3/exports/{job.id}", body'),
        "k8s",
        [
            "case.yaml:7:19: ingestion.job.create.url: template '{job.id}': the job's id is known only in job.poll.url (it comes from the create call's answer)"
        ],
    ),
    (
        "job-secret-in-poll",
        JOB.replace('{job.id}", every', '{job.id}?key={secret.k}", every').replace(
            "  request:", "  secrets: {k: {secret_store: kubernetes, secret_key: k}}\n  request:"
        ),
        "k8s",
        [
            "case.yaml:10:17: ingestion.job.poll.url: template '{secret.k}': a secret cannot go into job.poll.url: the URL is shown in logs; send the secret in request.headers"
        ],
    ),
    (
        "job-done-failed",
        JOB.replace("done: [ready]", "done: [ready]\n    failed: [ready]"),
        "k8s",
        ["case.yaml:12:13: ingestion.job.failed: 'ready' is in done and in failed"],
    ),
    (
        "job-get-body",
        JOB.replace("create: {url", "create: {method: GET, url"),
        "k8s",
        ["case.yaml:7:76: ingestion.job.create.body: a body needs method: POST"],
    ),
    (
        "job-foreach",
        JOB + "  iteration: {foreach: job, items: [{id: 1}]}\n",
        "k8s",
        [
            "case.yaml:13:24: ingestion.iteration.foreach: 'job' names the job ({job.id} in job.poll.url); pick another name"
        ],
    ),
    (
        "job-unknown-var-poll",
        JOB.replace('{job.id}"', '{job.name}"'),
        "k8s",
        ["case.yaml:9:17: ingestion.job.poll.url: template '{job.name}': job has the fields id"],
    ),
]
INVALID += [
    (
        "job-create-url-relative",
        JOB.replace('"https://api.example.com/v3/exports", body', '"/v3/exports", body'),
        "k8s",
        [
            "case.yaml:7:19: ingestion.job.create.url: must be an absolute http(s) URL with a literal host, e.g."
            " https://api.example.com/v1 (got '/v3/exports')"
        ],
    ),
    (
        "job-without-create",
        JOB.replace('    create: {url: "https://api.example.com/v3/exports", body: {type: contacts}}\n', ""),
        "k8s",
        ["case.yaml:6:3: ingestion.job.create: 'create' is required"],
    ),
    (
        "job-done-empty",
        JOB.replace("done: [ready]", "done: []"),
        "k8s",
        [
            "case.yaml:11:11: ingestion.job.done: must have at least 1 item after validation, not 0 (got a list)"
        ],
    ),
]
