"""The emulator's own admin API (loopback only): faults, world changes, the clock.

GET    /healthz                         liveness
GET    /endpoints                       the endpoint map
GET    /faults                          active faults
POST   /faults                          add one (JSON, as in a world file's `faults:`)
DELETE /faults                          clear all
DELETE /faults/{id}                     remove one
PUT    /instances/{name}/attributes/{k} set an instance attribute (body: the value)
DELETE /instances/{name}/attributes/{k} delete it
POST   /clock/advance                   {"seconds": N}: move the world clock forward
"""

from __future__ import annotations

from collections.abc import Callable

from emulator.asgi import ASGIApp, Request, Response, Router, google_error, json_api_app
from emulator.clock import OffsetClock
from emulator.errors import WorldLookupError
from emulator.faults import parse_fault
from emulator.world import World


def create_app(world: World, endpoints: Callable[[], dict[str, str]]) -> ASGIApp:
    router = Router()

    async def healthz(request: Request) -> Response:
        return Response.text("ok\n")

    async def get_endpoints(request: Request) -> Response:
        return Response.json(endpoints())

    async def list_faults(request: Request) -> Response:
        return Response.json({"faults": [f.to_json() for f in world.faults.active(world.clock())]})

    async def add_fault(request: Request) -> Response:
        try:
            fault = parse_fault(request.json(), where="fault", now=world.clock())
        except ValueError as exc:
            return google_error(400, str(exc))
        world.faults.add(fault)
        return Response.json(fault.to_json(), 201)

    async def clear_faults(request: Request) -> Response:
        world.faults.clear()
        return Response.json({})

    async def remove_fault(request: Request, fault_id: str) -> Response:
        if not world.faults.remove(int(fault_id)):
            return google_error(404, f"no fault with id {fault_id}")
        return Response.json({})

    async def attribute(request: Request, name: str, key: str) -> Response:
        try:
            value = None if request.method == "DELETE" else request.body.decode()
            world.set_attribute(name, key, value)
        except WorldLookupError as exc:
            return google_error(404, str(exc))
        except UnicodeDecodeError:
            return google_error(400, "attribute values are UTF-8 text")
        return Response.json({"instance": name, "key": key, "value": value})

    async def advance(request: Request) -> Response:
        if not isinstance(world.clock, OffsetClock):
            return google_error(409, "this world's clock is not adjustable")
        try:
            body = request.json()
            seconds = body["seconds"]
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise TypeError
            offset = world.clock.advance(float(seconds))
        except (ValueError, KeyError, TypeError):
            return google_error(400, 'body must be {"seconds": N} with N >= 0')
        world.changed()
        return Response.json({"offset_s": offset})

    router.add("GET", r"/healthz", healthz)
    router.add("GET", r"/endpoints", get_endpoints)
    router.add("GET", r"/faults", list_faults)
    router.add("POST", r"/faults", add_fault)
    router.add("DELETE", r"/faults", clear_faults)
    router.add("DELETE", r"/faults/(?P<fault_id>[0-9]{1,9})", remove_fault)
    router.add("PUT DELETE", r"/instances/(?P<name>[^/]+)/attributes/(?P<key>[^/]+)", attribute)
    router.add("POST", r"/clock/advance", advance)
    return json_api_app(router, service="admin")
