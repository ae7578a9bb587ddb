-- A key's own token budgets, replacing AI_BUDGET_KEY_*_TOKENS for that key
-- (one team's batch job gets more than the default, a trial key less).
-- NULL: the default applies. Additive.
ALTER TABLE api_keys ADD COLUMN budget_daily_tokens BIGINT;
ALTER TABLE api_keys ADD COLUMN budget_monthly_tokens BIGINT;
