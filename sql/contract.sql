-- name: contract
-- description: The contract's constants (warehouse.contract) as macros, for every other SQL file.
-- `{{contract NAME}}` is rendered as the integer constant NAME of warehouse.contract
-- (warehouse.ddl.render_ddl): the only place a number of the contract enters SQL.
-- A macro that returns a literal is folded to that literal where it is used, so
-- `bucket = bucket_of(17)` still prunes hive partitions and the fast-path branch
-- conditions of top_k and review_features stay constants.

-- Features per `activations` partition (its `bucket` column is feature // bucket_width()).
CREATE OR REPLACE MACRO bucket_width() AS {{contract BUCKET_WIDTH}};

-- The `activations` partition (hive directory bucket=N) holding feature `feat`.
CREATE OR REPLACE MACRO bucket_of(feat) AS feat // {{contract BUCKET_WIDTH}};

-- Strongest activations materialized per feature in top_examples.
CREATE OR REPLACE MACRO top_materialized() AS {{contract TOP_MATERIALIZED}};

-- Strongest features materialized per review in review_top_features.
CREATE OR REPLACE MACRO review_top() AS {{contract REVIEW_TOP}};

-- The default context window (tokens before and after), materialized in top_examples.
CREATE OR REPLACE MACRO default_before() AS {{contract DEFAULT_BEFORE}};
CREATE OR REPLACE MACRO default_after() AS {{contract DEFAULT_AFTER}};
