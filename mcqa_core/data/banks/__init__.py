"""Question banks (a user's own file, or a medical benchmark by name) as rows of MedMCQA's shape. Four roles, a
module each: `bank_files` reads a file into records, `bank_columns` says which column holds what, `bank_rows`
turns records into rows (and picks a bank's part), `bank_flags` is the set of flags that name a bank and map its
columns, shared by the commands, the settings files and the app."""
