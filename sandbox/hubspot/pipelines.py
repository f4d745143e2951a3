"""The portal's deal pipelines and its account details (CONTRACTS 1.3 records the dealstage and
pipeline ids deals carry; the shapes below follow HubSpot's pipelines and account-info APIs,
UNCONFIRMED against a recording: stage metadata values are strings, probability a fraction).

    GET /crm/v3/pipelines/deals       {"results": [pipeline, ...]}, each with its stages
    GET /account-info/v3/details      {"portalId", "companyCurrency", "timeZone", ...}
"""

from __future__ import annotations

from typing import Any

from sandbox.hubspot.schema import DEAL_STAGES, HUB_ID

COMPANY_CURRENCY = "USD"  # deals without a deal_currency_code are in this currency

# The default portal's "Sales Pipeline": (id, label, closed, probability); the ids are the
# dealstage values deals carry.
STAGE_INFO = {
    "appointmentscheduled": ("Appointment Scheduled", False, "0.2"),
    "qualifiedtobuy": ("Qualified To Buy", False, "0.4"),
    "presentationscheduled": ("Presentation Scheduled", False, "0.6"),
    "decisionmakerboughtin": ("Decision Maker Bought-In", False, "0.8"),
    "contractsent": ("Contract Sent", False, "0.9"),
    "closedwon": ("Closed Won", True, "1.0"),
    "closedlost": ("Closed Lost", True, "0.0"),
}
assert tuple(STAGE_INFO) == DEAL_STAGES


def _stage(order: int, stage_id: str, stamp: str) -> dict[str, Any]:
    label, closed, probability = STAGE_INFO[stage_id]
    return {
        "label": label,
        "displayOrder": order,
        "metadata": {"isClosed": "true" if closed else "false", "probability": probability},
        "id": stage_id,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
    }


def deal_pipelines(stamp: str) -> list[dict[str, Any]]:
    stages = [_stage(order, stage_id, stamp) for order, stage_id in enumerate(DEAL_STAGES)]
    return [{
        "label": "Sales Pipeline",
        "displayOrder": 0,
        "id": "default",
        "stages": stages,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }]


def account_details() -> dict[str, Any]:
    return {
        "portalId": HUB_ID,
        "accountType": "STANDARD",
        "timeZone": "US/Eastern",
        "companyCurrency": COMPANY_CURRENCY,
        "additionalCurrencies": ["EUR", "GBP"],
        "utcOffset": "-05:00",
        "utcOffsetMilliseconds": -18000000,
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
    }
