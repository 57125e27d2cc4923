"""Chargeback: allocation rules map a team's spend to cost centers, projects or departments; monthly statements
apply them (draft, regenerated in place) and are then frozen (finalized) and exported (CSV, JSON, SAP).

Modules: `rules` (the rules and their checks), `splitting` (a team's spend into exact lines), `statements`
(building, finalizing, exporting statements), `files` (CSV and JSON files), `sap` (the SAP FI journal and CO
reposting layouts).
"""
