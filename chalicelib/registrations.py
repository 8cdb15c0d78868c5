"""Use cases of ``/api/sip/registrations``: sipline registering with a PBX as a user.

Passwords are encrypted before they are stored, travel to the edge encrypted inside commands, and
are never returned. Each create or change sends a (re)register command; a delete unregisters.
``successful`` stays null until the edge reports a ``registration_succeeded`` or
``registration_failed`` event.
"""

from __future__ import annotations

from contextlib import suppress

from chalicelib.contracts import RegisterCommand, UnregisterCommand
from chalicelib.errors import CommandNotSent, InvalidInput, NotFound, UnreadableRecord
from chalicelib.models import Registration, RegistrationFields, RegistrationPatch
from chalicelib.services import Services, retry_on_conflict, send_command
from chalicelib.store.paging import PageRequest, PageResult
from chalicelib.store.repository import Versioned
from chalicelib.targets import check_host_port

_SERVERS = {"proxy": "proxy", "outbound_proxy": "outboundProxy"}
"""The fields naming a SIP server the relay will connect to, and their API names."""


def _check_servers(services: Services, fields: RegistrationFields | RegistrationPatch) -> None:
    for name, field in _SERVERS.items():
        value = getattr(fields, name)
        if value:
            check_host_port(services, field, value)


def _register_command(registration: Registration) -> RegisterCommand:
    return RegisterCommand(
        registration_id=registration.registration_id,
        username=registration.username,
        password_ciphertext=registration.password_ciphertext,
        proxy=registration.proxy,
        outbound_proxy=registration.outbound_proxy,
        auth_user=registration.auth_user,
    )


def create_registration(
    services: Services, account_id: str, fields: RegistrationFields
) -> Registration:
    """Create a registration and ask the edge to register."""
    _check_servers(services, fields)
    registration = Registration(
        registration_id=services.new_id(),
        created=services.clock(),
        username=fields.username,
        password_ciphertext=services.cipher.encrypt(fields.password),
        proxy=fields.proxy,
        outbound_proxy=fields.outbound_proxy,
        auth_user=fields.auth_user,
    )
    services.store.create_registration(account_id, registration)
    try:
        send_command(services, _register_command(registration))
    except CommandNotSent:  # not stored either: the user retries the create
        services.store.delete_registration(registration.registration_id)
        raise
    return registration


def _owned(services: Services, account_id: str, registration_id: str) -> Versioned[Registration]:
    """The account's registration: 404 if it is another account's (readable or not), 409
    ``unreadable_record`` if it is the account's and does not read."""
    try:
        owner, registration = services.store.get_registration(registration_id)
    except UnreadableRecord as error:
        owner = error.account_id or ""
        if owner == account_id:
            raise
    if owner != account_id:
        raise NotFound(f"registration {registration_id!r} not found")
    return registration


def get_registration(services: Services, account_id: str, registration_id: str) -> Registration:
    """Return one of the account's registrations."""
    return _owned(services, account_id, registration_id).value


def list_registrations(
    services: Services, account_id: str, request: PageRequest
) -> PageResult[Registration]:
    """List the account's registrations, newest first."""
    return services.store.list_registrations(account_id, request)


def patch_registration(
    services: Services, account_id: str, registration_id: str, patch: RegistrationPatch
) -> Registration:
    """Apply ``patch`` and ask the edge to register again with the new details."""
    for name in ("username", "password", "proxy"):
        if name in patch.model_fields_set and getattr(patch, name) is None:
            raise InvalidInput(name, "cannot be null")
    _check_servers(services, patch)
    changes = {n: getattr(patch, n) for n in patch.model_fields_set if n != "password"}
    if patch.password is not None:
        changes["password_ciphertext"] = services.cipher.encrypt(patch.password)
    changes["successful"] = None
    changes["status_at"] = services.clock()  # an older status event must not bring it back

    def attempt() -> Registration:
        stored = _owned(services, account_id, registration_id)
        registration = stored.value.model_copy(update=changes)
        services.store.save_registration(account_id, registration, stored.version)
        return registration

    registration = retry_on_conflict(attempt)
    send_command(services, _register_command(registration))  # 503: saved; retrying re-sends
    return registration


def delete_registration(services: Services, account_id: str, registration_id: str) -> None:
    """Delete a registration and ask the edge to unregister (one that does not read too)."""
    with suppress(UnreadableRecord):  # the account's own: deleting it is the way out (docs/api.md)
        _owned(services, account_id, registration_id)
    send_command(services, UnregisterCommand(registration_id=registration_id))
    services.store.delete_registration(registration_id)
