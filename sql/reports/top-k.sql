-- name: top-k
-- description: The strongest activations of a feature, with their contexts.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: k INTEGER(1..10000) = 20 -- number of activations
-- param: before INTEGER(0..1000) = contract.DEFAULT_BEFORE -- context tokens before the active token
-- param: after INTEGER(0..1000) = contract.DEFAULT_AFTER -- context tokens after the active token
-- Ranked by value (ties by token_pos); `left_context || token || right_context` is a
-- contiguous slice of the review's text (NULL when the review's tokens could not be
-- aligned to its text).
SELECT rank, value, review_id, stars, left_context, token, right_context
FROM top_k_contexts($feature, $k, before := $before, after := $after)
ORDER BY rank;
