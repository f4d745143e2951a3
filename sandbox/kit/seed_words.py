"""Word lists that more than one vendor seed draws from.

Draws pick by position, so changing, adding or reordering an entry changes the seeded data of
every vendor that uses the list. A vendor whose data differs keeps its own list.
"""

from __future__ import annotations

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra",
    "José", "Zoë", "Łukasz", "Søren", "Aoife", "Chloé", "Björn", "Mei", "Priya", "Olúwaseun",
    "Renée", "Jürgen", "Ana María", "Jean-Luc",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
    "O'Brien", "Müller", "García", "van der Berg", "Smith-Jones", "Nguyễn", "Kowalski",
    "Dubois", "Rossi", "Yamamoto", "Ó Súilleabháin",
)  # fmt: skip
JOB_TITLES = (
    "CEO", "CTO", "VP Sales", "Account Executive", "Marketing Manager", "Engineer",
    "Operations Lead", "Procurement Officer", "Office Manager", "Data Analyst",
)  # fmt: skip
COLORS = ("red", "green", "blue", "purple", "orange", "teal", "black")
COMPANY_HEADS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Soylent", "Tyrell", "Wonka",
    "Stark", "Wayne", "Cyberdyne", "Gringotts", "Nakatomi", "Oceanic", "Massive Dynamic",
    "Bluth", "Pied Piper", "Dunder Mifflin", "Prestige", "Monarch", "Aperture",
)  # fmt: skip
COMPANY_TAILS = (
    "Labs", "Systems", "Industries", "Partners", "Logistics", "Foods", "Analytics",
    "Holdings", "GmbH", "& Co.", "Ltd", "Inc.",
)  # fmt: skip
DEAL_WORDS = ("Renewal", "Expansion", "Pilot", "Enterprise plan", "Upsell", "Annual contract")
TASK_SUBJECTS = ("Follow up", "Send proposal", "Prepare quote", "Schedule demo", "Check in")
CALL_TITLES = ("Discovery call", "Demo call", "Pricing call", "Support call", "Check-in")
NOTE_BODIES = (
    "Called, left voicemail.",
    "<p>Met at the conference &amp; swapped cards.</p>",
    "Prefers email. Timezone: CET.",
    "Budget approved — send contract",
)
