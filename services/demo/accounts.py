"""The demo's people: one account per role (and per clinic), so the dashboard can be
tried by signing in as each, the way people sign in in production."""

from dataclasses import dataclass

from rich.console import Console
from sqlalchemy import Engine

from services.api import Role
from services.api.people import SecretBox, create_user


@dataclass(frozen=True, slots=True)
class DemoAccount:
    email: str
    role: Role
    clinic_id: str | None
    password: str
    totp_uri: str | None


def create_demo_accounts(engine: Engine, box: SecretBox, clinics: list[str]) -> list[DemoAccount]:
    wanted: list[tuple[str, str, Role, str | None]] = [
        ("fleet@demo.example", "Demo Fleet Team", Role.MANUFACTURER, None),
        *(
            (f"staff@{clinic}.demo.example", f"{clinic} staff", Role.CLINIC, clinic)
            for clinic in clinics
        ),
        ("auditor@demo.example", "Demo Auditor", Role.AUDITOR, None),
    ]
    accounts = []
    for email, name, role, clinic in wanted:
        enrolment = create_user(engine, box, email, name, role, clinic)
        accounts.append(DemoAccount(email, role, clinic, enrolment.password, enrolment.totp_uri))
    return accounts


def print_accounts(console: Console, accounts: list[DemoAccount]) -> None:
    console.print("sign in to the dashboard as (e-mail / password):", highlight=False)
    for account in accounts:
        scope = account.clinic_id or "whole fleet"
        console.print(
            f"  {account.role.value} ({scope}): {account.email} / {account.password}",
            soft_wrap=True, highlight=False,
        )  # fmt: skip
        if account.totp_uri:
            console.print(
                f"    authenticator code needed; add to your app: {account.totp_uri}",
                soft_wrap=True, highlight=False,
            )  # fmt: skip
