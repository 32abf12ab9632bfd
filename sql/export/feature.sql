-- name: export-feature
-- description: What `saewh export` reads for one feature (warehouse/export.py runs each statement).
-- param: feature INTEGER -- feature id
-- param: k INTEGER -- top activations
-- param: bins INTEGER -- frequency histogram bins
-- param: intervals INTEGER -- equal-width intervals sampled
-- param: n INTEGER -- samples per interval
-- param: seed INTEGER -- sampling seed
-- param: positions BIGINT -- (a BIGINT[] of token_pos: the records statement)
-- param: before INTEGER -- window tokens before the token
-- param: after INTEGER -- window tokens after the token

-- statement: corpus -- the prompts: reviews with tokens, and the longest one's length
SELECT count(*) FILTER (WHERE n_tokens > 0) AS n_prompts,
       coalesce(max(n_tokens), 0) AS max_prompt_tokens
FROM reviews;

-- statement: summary -- the feature's row of `features`
SELECT feature, n_active, n_reviews, density, max_value
FROM features
WHERE feature = $feature;

-- statement: histogram -- activation counts in equal-width bins from 0 to the max
SELECT interval, lo, hi, n_activations
FROM feature_intervals($feature, intervals := $bins)
ORDER BY interval;

-- statement: top -- the strongest activations (SAEDashboard's "top" group)
SELECT rank, token_pos, review_id, stars, value
FROM top_k($feature, $k);

-- statement: intervals -- the equal-width intervals the samples come from
SELECT interval, lo, hi, frac_activations
FROM feature_intervals($feature, intervals := $intervals)
ORDER BY interval;

-- statement: samples -- uniform random activations of each interval
SELECT interval, sample, token_pos, review_id, stars, value
FROM interval_samples($feature, n := $n, intervals := $intervals, seed := $seed, before := 0, after := 0)
ORDER BY interval, sample;

-- statement: records -- each position's window: its tokens and the feature's value on each
SELECT token_pos, tokens, "values", max_value, min_value, max_value_token_index, qualifying_token_index
FROM activation_records($feature, $positions::BIGINT[], before := $before, after := $after)
ORDER BY token_pos;
