-- An account's own token budgets, replacing AI_BUDGET_ACCOUNT_*_TOKENS for
-- it (a team with a larger share, a trial account a smaller one). NULL: the
-- default applies. Additive.
ALTER TABLE users ADD COLUMN budget_daily_tokens BIGINT;
ALTER TABLE users ADD COLUMN budget_monthly_tokens BIGINT;
