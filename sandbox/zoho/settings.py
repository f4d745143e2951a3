"""The org's metadata a sync reads (CONTRACTS 4.3 records none of it; shapes follow Zoho's
field-metadata and organization APIs, UNCONFIRMED against a recording):

    GET /crm/v3/settings/fields?module=Deals   {"fields": [{api_name, data_type,
        pick_list_values: [{display_value, actual_value, id, sequence_number, forecast_type,
        probability}]}, ...]}: the Stage picklist says which stages are open, won or lost
    GET /crm/v3/org                            {"org": [{id, company_name, iso_code,
        currency_symbol, time_zone, ...}]}: iso_code is the org's home currency
"""

from __future__ import annotations

from typing import Any

from sandbox.zoho.schema import PIPELINE, STAGE_PROBABILITY, Module

# The org's own fields (custom_field true): the others are Zoho's standard fields.
CUSTOM_FIELDS = frozenset({"Favorite_Color", "Customer_Tier"})

ORG_ID = "4876876000000010001"
HOME_CURRENCY = "USD"  # the org is single-currency: every amount is in it


def _picklist_id(field_number: int, index: int) -> str:
    return f"4876876000000{field_number:03d}{index:03d}"


def _forecast_type(stage: str) -> str:
    if stage == "Closed Won":
        return "Closed Won"
    return "Closed Lost" if stage.startswith("Closed Lost") else "Open"


def deal_fields() -> list[dict[str, Any]]:
    """The Deals fields a sync needs the metadata of: Stage and Pipeline."""
    stages = [
        {
            "display_value": stage,
            "actual_value": stage,
            "id": _picklist_id(101, index),
            "sequence_number": index + 1,
            "type": "used",
            "forecast_type": _forecast_type(stage),
            "forecast_category": {"name": {"Open": "Pipeline", "Closed Won": "Closed"}.get(
                _forecast_type(stage), "Omitted")},
            "probability": probability,
        }
        for index, (stage, probability) in enumerate(STAGE_PROBABILITY.items())
    ]
    pipelines = [{
        "display_value": PIPELINE,
        "actual_value": PIPELINE,
        "id": _picklist_id(102, 0),
        "sequence_number": 1,
        "type": "used",
    }]
    return [
        {"api_name": "Stage", "field_label": "Stage", "data_type": "picklist",
         "id": _picklist_id(101, 999), "pick_list_values": stages},
        {"api_name": "Pipeline", "field_label": "Pipeline", "data_type": "picklist",
         "id": _picklist_id(102, 999), "pick_list_values": pipelines},
    ]


def module_fields(module: Module) -> list[dict[str, Any]]:
    """GET /settings/fields?module=X: every field of the module (`$` keys are record metadata,
    not fields), Deals' Stage and Pipeline with their picklists."""
    detailed = {f["api_name"]: f for f in deal_fields()} if module.api_name == "Deals" else {}
    out = []
    for number, (name, spec) in enumerate(module.fields.items()):
        if name.startswith("$"):
            continue
        out.append(detailed.get(name) or {
            "api_name": name,
            "field_label": name.replace("_", " "),
            "data_type": spec.kind,
            "custom_field": name in CUSTOM_FIELDS,
            "read_only": spec.read_only,
            "id": _picklist_id(200 + number, 999),
        })
    return out


def organization(time_zone: str) -> dict[str, Any]:
    return {
        "id": ORG_ID,
        "company_name": "Sandbox Org",
        "primary_email": "amina.wanjiru@sandbox-org.example",
        "country": "Kenya",
        "country_code": "KE",
        "time_zone": time_zone,
        "iso_code": HOME_CURRENCY,
        "currency": "US Dollar - USD",
        "currency_symbol": "$",
        "currency_locale": "en_US",
        "mc_status": False,  # multi-currency off
    }
