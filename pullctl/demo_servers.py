"""The fake servers of ``pullctl demo``, which the test suite serves too (``tests/servers/upstream.py`` mounts
the forecast, ``tests/servers/mcp_server.py`` builds on the MCP server): one implementation of each.

* Open-Meteo's forecast endpoint, ``GET /v1/forecast``: ``ForecastQuery.parse(query)`` validates the query
  (``BadRequest`` with Open-Meteo's wording), ``.body()`` is the response: ``latitude``, ``longitude``,
  ``generationtime_ms`` (random on every call: sources ignore it for dedup), ``utc_offset_seconds`` (0),
  ``timezone`` (the ``timezone`` parameter, default ``GMT``), ``timezone_abbreviation``, ``elevation``, and
  with ``hourly=a,b`` the sections ``hourly_units`` and ``hourly`` (``time`` plus one list per variable of
  ``HOURLY_UNITS``). Everything but ``generationtime_ms`` is a function of the query. Hours run from
  ``start_date`` to ``end_date`` inclusive (``YYYY-MM-DD``, both or neither, at most 92 days), else
  ``forecast_days`` (default 2, 1..16) from ``DEFAULT_START``, a fixed date, so runs repeat exactly.
  ``forecast_response(query)`` is the endpoint: 200 with the body, or 400 ``{"error": true, "reason": ...}``.
* ``WeatherApi``: the demo's app around it, with 20 to 80 ms of latency per request and a first ``503`` with
  ``Retry-After: 1`` for each flaky region (so the demo shows retries), counting requests and 503s.
* The MCP server, ``build_mcp_server(directory)``: the tool ``list_active_regions`` (optional ``limit``: the
  first ``limit`` regions) answers ``directory.regions`` as they are at call time, after ``directory.delay``
  seconds, and records ``(tool, arguments)`` in ``directory.calls`` (``take_regions`` does that for other
  tools). ``MCPServer()`` calls ``logging.basicConfig()`` when the root logger has no handler; building one
  here leaves the root logger alone.

Starlette and the MCP SDK are imported when a server is built, never when this module is.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import random
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_START = date(2026, 1, 1)
HOURLY_UNITS: dict[str, str] = {
    "temperature_2m": "°C",
    "relative_humidity_2m": "%",
    "dew_point_2m": "°C",
    "apparent_temperature": "°C",
    "precipitation": "mm",
    "rain": "mm",
    "cloud_cover": "%",
    "surface_pressure": "hPa",
    "wind_speed_10m": "km/h",
    "wind_direction_10m": "°",
    "weather_code": "wmo code",
}
MAX_RANGE_DAYS = 92


# -- the forecast --------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A query Open-Meteo would answer 400; ``reason`` is its wording."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ForecastQuery:
    latitude: float
    longitude: float
    start: date
    days: int
    variables: tuple[str, ...]
    timezone: str = "GMT"

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ForecastQuery:
        latitude = _float(params, "latitude", 90)
        longitude = _float(params, "longitude", 180)
        if ("start_date" in params) != ("end_date" in params):
            raise BadRequest("Parameter 'start_date' and 'end_date' must be set both or none")
        if "start_date" in params:
            start, end = _date(params, "start_date"), _date(params, "end_date")
            if end < start:
                raise BadRequest(f"End-date {end} must not be before start-date {start}")
            if (end - start).days >= MAX_RANGE_DAYS:
                raise BadRequest(f"At most {MAX_RANGE_DAYS} days between start_date and end_date")
            days = (end - start).days + 1
        else:
            start, days = DEFAULT_START, _int(params, "forecast_days", 2, 1, 16)
        variables = tuple(v for v in params.get("hourly", "").split(",") if v)
        unknown = [v for v in variables if v not in HOURLY_UNITS]
        if unknown:
            raise BadRequest(
                f"Cannot initialize WeatherVariable from invalid String value {unknown[0]} for key hourly"
            )
        return cls(latitude, longitude, start, days, variables, params.get("timezone", "GMT"))

    @property
    def where(self) -> tuple[float, float]:
        return round(self.latitude, 4), round(self.longitude, 4)

    def body(self) -> dict[str, Any]:
        """Open-Meteo's response shape; everything but ``generationtime_ms`` is a function of the query."""
        body: dict[str, Any] = {
            "latitude": round(self.latitude, 4),
            "longitude": round(self.longitude, 4),
            "generationtime_ms": round(random.uniform(0.01, 0.9), 6),
            "utc_offset_seconds": 0,
            "timezone": self.timezone,
            "timezone_abbreviation": "GMT",
            "elevation": float(round(abs(self.latitude * 7 + self.longitude * 3) % 900)),
        }
        if not self.variables:
            return body
        times: list[str] = []
        series: dict[str, list[float | int]] = {v: [] for v in self.variables}
        for offset in range(self.days):
            day = self.start + timedelta(days=offset)
            times.extend(f"{day.isoformat()}T{hour:02d}:00" for hour in range(24))
            for variable in self.variables:
                rng = random.Random(f"{self.latitude:.4f},{self.longitude:.4f},{day.isoformat()},{variable}")
                series[variable].extend(_hourly_value(variable, rng, self.latitude, h) for h in range(24))
        body["hourly_units"] = {"time": "iso8601", **{v: HOURLY_UNITS[v] for v in self.variables}}
        body["hourly"] = {"time": times, **series}
        return body


def forecast_response(params: Mapping[str, str]) -> Response:
    """``GET /v1/forecast``: 200 with the forecast, or 400 with Open-Meteo's error body."""
    from starlette.responses import JSONResponse

    try:
        return JSONResponse(ForecastQuery.parse(params).body())
    except BadRequest as exc:
        return error_response(exc.reason, 400)


def error_response(reason: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """Open-Meteo's error body: ``{"error": true, "reason": ...}``."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": True, "reason": reason}, status_code=status, headers=headers)


def _int(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Parameter '{name}' must be an integer. Given: {raw}") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"Parameter '{name}' must be in range of {minimum} to {maximum}. Given: {value}")
    return value


def _float(params: Mapping[str, str], name: str, limit: float) -> float:
    raw = params.get(name)
    if raw is None:
        raise BadRequest(f"Required parameter '{name}' is missing")
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"Cannot initialize Float from invalid String value {raw} for key {name}") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise BadRequest(f"{name.capitalize()} must be in range of -{limit:g} to {limit:g}°. Given: {raw}.")
    return value


def _date(params: Mapping[str, str], name: str) -> date:
    raw = params[name]
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"Invalid date format for '{name}': {raw}. Expected YYYY-MM-DD") from None


def _hourly_value(variable: str, rng: random.Random, latitude: float, hour: int) -> float | int:
    diurnal = math.sin((hour - 9) / 24 * 2 * math.pi)
    base_temp = 28 - abs(latitude) * 0.45
    match variable:
        case "temperature_2m" | "apparent_temperature":
            return round(base_temp + 6 * diurnal + rng.uniform(-1.5, 1.5), 1)
        case "dew_point_2m":
            return round(base_temp - 6 + rng.uniform(-2, 2), 1)
        case "relative_humidity_2m" | "cloud_cover":
            return rng.randint(35, 100)
        case "precipitation" | "rain":
            return round(max(0.0, rng.gauss(0, 0.6)), 1)
        case "surface_pressure":
            return round(1013 + rng.uniform(-12, 12), 1)
        case "wind_speed_10m":
            return round(rng.uniform(0, 28), 1)
        case "wind_direction_10m":
            return rng.randint(0, 359)
        case _:  # weather_code
            return rng.choice([0, 1, 2, 3, 45, 51, 61, 80])


class WeatherApi:
    """The demo weather API: which regions fail first, how many requests and 503s it served."""

    def __init__(self, regions: list[dict[str, Any]], flaky: tuple[str, ...] = ()) -> None:
        by_id = {r["region_id"]: r for r in regions}
        self.flaky = {_coords(by_id[i]["latitude"], by_id[i]["longitude"]) for i in flaky}
        self.seen: set[tuple[float, float]] = set()
        self.requests = 0
        self.unavailable = 0

    def app(self) -> Starlette:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[Route("/v1/forecast", self.forecast)])

    async def forecast(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        self.requests += 1
        try:
            query = ForecastQuery.parse(request.query_params)
        except BadRequest as exc:
            return error_response(exc.reason, 400)
        where = query.where
        await asyncio.sleep((20 + zlib.crc32(repr(where).encode()) % 61) / 1000)  # 20..80 ms
        if where in self.flaky and where not in self.seen:
            self.seen.add(where)
            self.unavailable += 1
            reason = "demo: the first request for this region is refused, to show a retry"
            return error_response(reason, 503, {"Retry-After": "1"})
        self.seen.add(where)
        return JSONResponse(query.body())


def _coords(latitude: float, longitude: float) -> tuple[float, float]:
    return round(latitude, 4), round(longitude, 4)


# -- the MCP server ------------------------------------------------------------------------------------------


class Regions(Protocol):
    """What ``list_active_regions`` serves: read at call time, so a test may change it while it runs."""

    regions: list[dict[str, Any]]
    delay: float  # seconds before list_active_regions answers
    calls: list[tuple[str, dict[str, Any]]]  # (tool, arguments) of every call


@dataclass
class RegionDirectory:
    """A plain ``Regions``: the demo's."""

    regions: list[dict[str, Any]]
    delay: float = 0.0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def take_regions(directory: Regions, tool: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Record a call of ``tool`` and answer a copy of the regions."""
    directory.calls.append((tool, arguments))
    return copy.deepcopy(directory.regions)


@contextmanager
def _no_root_logging_setup() -> Iterator[None]:
    """Give the root logger a handler for a moment, so ``logging.basicConfig()`` does nothing."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def build_mcp_server(directory: Regions, name: str = "pullctl-demo") -> MCPServer[Any]:
    """An ``MCPServer`` with ``list_active_regions``; add tools with ``@server.tool()``."""
    from mcp.server.mcpserver import MCPServer

    with _no_root_logging_setup():
        server: MCPServer[Any] = MCPServer(name, log_level="WARNING")

    @server.tool()
    async def list_active_regions(limit: int | None = None) -> list[dict[str, Any]]:
        """The active regions (the first ``limit`` of them when given)."""
        found = take_regions(directory, "list_active_regions", {} if limit is None else {"limit": limit})
        if directory.delay:
            await asyncio.sleep(directory.delay)
        return found if limit is None else found[:limit]

    return server
