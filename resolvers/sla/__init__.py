"""SLA monitoring: provider health measured from LiteLLM_SpendLogs (`health`), SLA definitions (`definitions`) and
the violations the collector opens and resolves (`violations`), failover rules that route a failing model's
requests to its fallback (`failover`), and the periodic collector that drives them all (`collector`)."""
