"""The plumbing every domain package uses and none owns: settings (`config`), errors and input checks
(`errors`, `validation`, `outbound`), time and periods (`periods`), the unit of work (`work`), the event bus and
live feeds (`events`, `feeds`), periodic jobs (`jobs`, `backoff`), cursor pages (`pages`), safe CSV
(`spreadsheet`), read-once attributes (`memo`) and the embedded database's lock (`embedded`). It imports no domain
package (import-linter).
"""
