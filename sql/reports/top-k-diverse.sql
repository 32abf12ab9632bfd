-- name: top-k-diverse
-- description: The strongest activations of a feature, at most N per review, business or user, with contexts.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: k INTEGER(1..10000) = 20 -- number of activations
-- param: per_review INTEGER(1..) = 1 -- at most this many per review
-- param: per_business INTEGER(1..) = NULL -- at most this many per business (default: no limit)
-- param: per_user INTEGER(1..) = NULL -- at most this many per user (default: no limit)
-- param: before INTEGER(0..1000) = contract.DEFAULT_BEFORE -- context tokens before the active token
-- param: after INTEGER(0..1000) = contract.DEFAULT_AFTER -- context tokens after the active token
-- The macro top_k_diverse: ranked by value (ties by token_pos), the caps applied in
-- the order review, business, user, each to the survivors of the previous one.
WITH top AS (
    SELECT * FROM top_k_diverse($feature, $k, per_review := $per_review,
                                per_business := $per_business, per_user := $per_user)
)
SELECT top.rank, top.value, top.review_id, top.business_id, top.user_id, top.stars,
       c.left_context, c.token, c.right_context
FROM top
JOIN token_contexts((SELECT list(token_pos) FROM top), before := $before, after := $after) c
  ON c.token_pos = top.token_pos
ORDER BY top.rank;
