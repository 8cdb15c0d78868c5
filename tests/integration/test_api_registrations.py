"""``/api/sip/registrations``: sipline registering with a PBX, passwords write-only."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from chalicelib.contracts import RegisterCommand, UnregisterCommand
from chalicelib.crypto import FernetCipher
from tests.integration.harness import Api, Aws, Queue, Reply, apply, path_of, stored_items
from tests.support.fakes import OTHER_API_KEY, PASSWORD_KEY

PASSWORD = "pbx-password-7Hq!"
FIELDS = {
    "username": "1001",
    "password": PASSWORD,
    "proxy": "pbx.example.test",
    "outboundProxy": "sbc.example.test:5061",
    "authUser": "auth1001",
}


def test_create_returns_201_and_the_registration_without_its_password(api: Api) -> None:
    reply = api.post("/api/sip/registrations", FIELDS)

    assert reply.status == 201
    assert reply.body == {
        "registrationId": reply.body["registrationId"],
        "created": "2026-11-25T12:00:00Z",
        "username": "1001",
        "proxy": "pbx.example.test",
        "outboundProxy": "sbc.example.test:5061",
        "authUser": "auth1001",
        "successful": None,
    }
    assert PASSWORD not in json.dumps(reply.body)


def test_create_stores_the_password_only_encrypted(api: Api, aws: Aws) -> None:
    api.post("/api/sip/registrations", FIELDS)

    items = stored_items(aws)

    assert any("REGISTRATION#" in item["pk"]["S"] for item in items)
    assert PASSWORD not in json.dumps(items)


def test_create_queues_a_register_command_carrying_the_password_encrypted(
    api: Api, queue: Queue
) -> None:
    registration_id = api.post("/api/sip/registrations", FIELDS).body["registrationId"]

    [command] = queue.drain()

    assert isinstance(command, RegisterCommand)
    assert command.registration_id == registration_id
    assert (command.username, command.proxy) == ("1001", "pbx.example.test")
    assert (command.outbound_proxy, command.auth_user) == ("sbc.example.test:5061", "auth1001")
    assert PASSWORD not in command.password_ciphertext
    assert FernetCipher(PASSWORD_KEY).decrypt(command.password_ciphertext) == PASSWORD


@pytest.mark.parametrize("missing", ["username", "password", "proxy"])
def test_create_without_a_required_field_is_refused(api: Api, queue: Queue, missing: str) -> None:
    body = {k: v for k, v in FIELDS.items() if k != missing}

    reply = api.post("/api/sip/registrations", body)

    assert reply.status == 400
    assert reply.body["field"] == missing
    assert api.get("/api/sip/registrations").body["total"] == 0
    assert queue.drain() == []


def test_create_with_read_only_or_unknown_field_is_refused(api: Api) -> None:
    for field in ("registrationId", "successful", "expires"):
        reply = api.post("/api/sip/registrations", FIELDS | {field: "x"})

        assert reply.status == 400
        assert reply.body["field"] == field
    assert api.get("/api/sip/registrations").body["total"] == 0


def test_get_returns_the_registration(api: Api) -> None:
    created = api.create_registration(**FIELDS)

    reply = api.get(f"/api/sip/registrations/{created['registrationId']}")

    assert reply.status == 200
    assert reply.body == created


def test_list_pages_through_five_registrations_forwards_then_backwards(api: Api) -> None:
    ids = [api.create_registration(username=f"user{i}")["registrationId"] for i in range(5)]
    newest_first = list(reversed(ids))

    first = api.get("/api/sip/registrations?pageSize=2")
    second = api.get(path_of(first.body["next"]))
    third = api.get(path_of(second.body["next"]))
    back_to_second = api.get(path_of(third.body["previous"]))
    back_to_first = api.get(path_of(back_to_second.body["previous"]))

    def page_ids(reply: Reply) -> list[str]:
        return [r["registrationId"] for r in reply.body["results"]]

    assert page_ids(first) == newest_first[0:2]
    assert page_ids(second) == newest_first[2:4]
    assert page_ids(third) == newest_first[4:5]
    assert page_ids(back_to_second) == newest_first[2:4]
    assert page_ids(back_to_first) == newest_first[0:2]
    assert first.body["previous"] is None
    assert third.body["next"] is None
    assert back_to_first.body["previous"] is None
    for reply in (first, second, third, back_to_second, back_to_first):
        assert reply.status == 200
        assert reply.body["total"] == 5
        assert set(reply.body) == {"next", "previous", "results", "total"}


def test_page_links_are_full_urls_keeping_the_page_size(api: Api) -> None:
    for i in range(3):
        api.create_registration(username=f"user{i}")

    link = api.get("/api/sip/registrations?pageSize=2").body["next"]

    parts = urlsplit(link)
    assert parts.scheme in ("http", "https")
    assert parts.netloc
    assert parts.path == "/api/sip/registrations"
    assert "pageSize=2" in parts.query
    assert "cursor=" in parts.query


def test_list_of_no_registrations_is_an_empty_page(api: Api) -> None:
    reply = api.get("/api/sip/registrations")

    assert reply.body == {"next": None, "previous": None, "results": [], "total": 0}


@pytest.mark.parametrize("size", ["0", "101", "abc", "-1"])
def test_list_with_bad_page_size_is_refused(api: Api, size: str) -> None:
    reply = api.get(f"/api/sip/registrations?pageSize={size}")

    assert reply.status == 400
    assert reply.body["field"] == "pageSize"
    assert repr(size) in reply.body["detail"]


def test_list_with_a_forged_cursor_is_refused(api: Api) -> None:
    reply = api.get("/api/sip/registrations?cursor=not-a-cursor")

    assert reply.status == 400
    assert reply.body["field"] == "cursor"


def test_patch_changes_fields_and_queues_a_register_command_again(api: Api, queue: Queue) -> None:
    registration_id = api.create_registration(**FIELDS)["registrationId"]
    queue.drain()

    reply = api.patch(f"/api/sip/registrations/{registration_id}", {"proxy": "pbx2.example.test"})

    assert reply.status == 200
    assert reply.body["proxy"] == "pbx2.example.test"
    assert reply.body["username"] == "1001"
    assert api.get(f"/api/sip/registrations/{registration_id}").body["proxy"] == (
        "pbx2.example.test"
    )
    [command] = queue.drain()
    assert isinstance(command, RegisterCommand)
    assert command.proxy == "pbx2.example.test"
    assert FernetCipher(PASSWORD_KEY).decrypt(command.password_ciphertext) == PASSWORD


def test_patch_of_the_password_re_registers_with_the_new_one(
    api: Api, aws: Aws, queue: Queue
) -> None:
    registration_id = api.create_registration(**FIELDS)["registrationId"]
    queue.drain()

    reply = api.patch(f"/api/sip/registrations/{registration_id}", {"password": "new-pw-0"})

    assert reply.status == 200
    assert "password" not in reply.body
    [command] = queue.drain()
    assert isinstance(command, RegisterCommand)
    assert FernetCipher(PASSWORD_KEY).decrypt(command.password_ciphertext) == "new-pw-0"
    assert "new-pw-0" not in json.dumps(stored_items(aws))


@pytest.mark.parametrize("field", ["username", "password", "proxy"])
def test_patch_cannot_null_a_required_field(api: Api, queue: Queue, field: str) -> None:
    registration_id = api.create_registration(**FIELDS)["registrationId"]
    queue.drain()

    reply = api.patch(f"/api/sip/registrations/{registration_id}", {field: None})

    assert reply.status == 400
    assert reply.body["field"] == field
    assert queue.drain() == []


def test_delete_returns_204_and_queues_an_unregister_command(api: Api, queue: Queue) -> None:
    registration_id = api.create_registration()["registrationId"]
    queue.drain()

    reply = api.delete(f"/api/sip/registrations/{registration_id}")

    assert reply.status == 204
    assert reply.body is None
    assert queue.drain() == [UnregisterCommand(registration_id=registration_id)]
    assert api.get(f"/api/sip/registrations/{registration_id}").status == 404
    assert api.get("/api/sip/registrations").body["total"] == 0


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_registration_is_404(api: Api, queue: Queue, method: str) -> None:
    body = {"username": "x"} if method == "PATCH" else None

    reply = api.request(method, "/api/sip/registrations/no-such-id", body)

    assert reply.status == 404
    assert reply.body["code"] == "not_found"
    assert queue.drain() == []


def _status_event(event_id: str, registration_id: str, kind: str, at: str) -> dict[str, str]:
    return {
        "eventId": event_id,
        "type": f"registration_{kind}",
        "occurredAt": at,
        "registrationId": registration_id,
    }


def test_successful_is_null_until_the_edge_reports_then_follows_it(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]
    path = f"/api/sip/registrations/{registration_id}"
    assert api.get(path).body["successful"] is None

    apply(api, [_status_event("r1", registration_id, "succeeded", "2026-11-25T12:00:01Z")])
    assert api.get(path).body["successful"] is True

    apply(api, [_status_event("r2", registration_id, "failed", "2026-11-25T12:05:00Z")])
    assert api.get(path).body["successful"] is False


def test_patch_resets_successful_until_the_edge_reports_again(api: Api) -> None:
    registration_id = api.create_registration()["registrationId"]
    path = f"/api/sip/registrations/{registration_id}"
    apply(api, [_status_event("r1", registration_id, "succeeded", "2026-11-25T12:00:01Z")])

    reply = api.patch(path, {"proxy": "pbx2.example.test"})

    assert reply.body["successful"] is None
    assert api.get(path).body["successful"] is None


def test_cursor_of_another_list_is_refused(api: Api) -> None:
    for i in range(2):
        api.create_registration(username=f"user{i}")
    api.create_agent()
    link = api.get("/api/sip/registrations?pageSize=1").body["next"]
    cursor = link.split("cursor=", 1)[1]

    reply = api.get(f"/api/agents?cursor={cursor}")

    assert reply.status == 400
    assert reply.body["field"] == "cursor"


def test_cursor_of_another_account_is_refused(api: Api) -> None:
    for i in range(2):
        api.create_registration(username=f"user{i}")
    link = api.get("/api/sip/registrations?pageSize=1").body["next"]

    reply = api.as_key(OTHER_API_KEY).get(path_of(link))

    assert reply.status == 400
    assert reply.body["field"] == "cursor"


def test_registration_created_while_the_queue_is_down_is_503_and_not_kept(
    api: Api, aws: Aws
) -> None:
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)

    reply = api.post("/api/sip/registrations", FIELDS)

    assert reply.status == 503
    assert reply.body["code"] == "command_not_sent"
    assert PASSWORD not in json.dumps(reply.body)
    assert api.get("/api/sip/registrations").body["total"] == 0


@pytest.mark.parametrize("password", ["p" * 257, 12345])
def test_refused_password_is_not_echoed_in_the_error(api: Api, password: object) -> None:
    reply = api.post("/api/sip/registrations", FIELDS | {"password": password})

    assert reply.status == 400
    assert reply.body["field"] == "password"
    assert str(password) not in json.dumps(reply.body)
