-- name: feature
-- description: A feature card: density, reviews, max/mean, quantiles, histogram, stars, top examples, interval samples.
-- title: Feature $feature
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: k INTEGER(1..100) = 10 -- number of top examples
-- param: bins INTEGER(1..200) = 20 -- histogram bins
-- param: before INTEGER(0..1000) = contract.DEFAULT_BEFORE -- context tokens before the active token
-- param: after INTEGER(0..1000) = contract.DEFAULT_AFTER -- context tokens after the active token
-- param: intervals INTEGER(1..100) = 5 -- equal-width intervals of (0, max] sampled
-- param: samples INTEGER(0..100) = 2 -- random activations per interval
-- Five result sets (sections): summary, histogram, stars, examples, samples.  The
-- examples' and samples' `tokens`/`token_values` (the window's tokens and the feature's
-- exact value on each) shade the context in html; the terminal table shows the context.

-- statement: summary -- the feature's statistics (quantiles of its nonzero activations)
-- display: vertical
-- display: headline {n_active} activations ({density:%} of tokens) in {n_reviews} reviews ({review_density:%} of reviews with tokens); max {max_value}, mean {mean_value}
WITH q AS (
    SELECT min(value) AS min_value,
           quantile_disc(value, 0.5) AS p50,
           quantile_disc(value, 0.9) AS p90,
           quantile_disc(value, 0.99) AS p99
    FROM activations
    WHERE bucket = bucket_of($feature) AND feature = $feature
)
SELECT f.feature, f.n_active, f.n_reviews, f.density, f.review_density,
       f.max_value, f.mean_value, q.min_value, q.p50, q.p90, q.p99
FROM features f CROSS JOIN q
WHERE f.feature = $feature;

-- statement: histogram -- the {n_active} activations ({density:%} of tokens) in equal-width bins from 0 to the max {max_value}
-- display: bars n_activations lo
-- display: axes activation value (bin start) | activations in the bin
WITH acts AS (
    SELECT value::DOUBLE AS value
    FROM activations
    WHERE bucket = bucket_of($feature) AND feature = $feature
),
span AS (
    SELECT least(min(value), 0.0) AS lo, max(value) AS hi FROM acts
),
binned AS (
    SELECT least(floor((a.value - s.lo) / ((s.hi - s.lo) / $bins))::INTEGER, $bins - 1) AS bin,
           count(*) AS n_activations
    FROM acts a CROSS JOIN span s
    GROUP BY bin
)
SELECT b.range::INTEGER AS bin,
       s.lo + b.range * (s.hi - s.lo) / $bins AS lo,
       s.lo + (b.range + 1) * (s.hi - s.lo) / $bins AS hi,
       coalesce(binned.n_activations, 0) AS n_activations
FROM range($bins) b
CROSS JOIN span s
LEFT JOIN binned ON binned.bin = b.range
WHERE s.hi IS NOT NULL
ORDER BY bin;

-- statement: stars -- activation by star rating (lift 1 = no preference)
-- display: bars lift stars
-- display: axes star rating | lift
-- display: reference 1 no preference
SELECT stars, n_reviews, n_active_reviews, frac_active, mean_max_value, lift
FROM feature_by_stars($feature)
ORDER BY stars;

-- statement: examples -- the strongest activations, every token shaded by the feature's value on it
-- display: shaded tokens token_values token_index
WITH top AS (
    SELECT * FROM top_k_contexts($feature, $k, before := $before, after := $after)
),
rec AS (
    SELECT token_pos, tokens, "values", qualifying_token_index
    FROM activation_records($feature, (SELECT list(token_pos) FROM top), before := $before, after := $after)
)
SELECT top.rank, top.value, top.review_id, top.stars, top.left_context, top.token, top.right_context,
       rec.tokens, rec."values" AS token_values, rec.qualifying_token_index AS token_index
FROM top LEFT JOIN rec ON rec.token_pos = top.token_pos
ORDER BY top.rank;

-- statement: samples -- random activations from equal-width intervals of (0, max], strongest interval first
-- display: shaded tokens token_values token_index
WITH s AS (
    SELECT * FROM interval_samples($feature, n := $samples, intervals := $intervals,
                                   before := $before, after := $after)
),
rec AS (
    SELECT token_pos, tokens, "values", qualifying_token_index
    FROM activation_records($feature, (SELECT list(token_pos) FROM s), before := $before, after := $after)
)
SELECT s.interval, s.lo, s.hi, s.sample, s.value, s.review_id, s.stars,
       s.left_context, s.token, s.right_context,
       rec.tokens, rec."values" AS token_values, rec.qualifying_token_index AS token_index
FROM s LEFT JOIN rec ON rec.token_pos = s.token_pos
ORDER BY s.interval DESC, s.sample;
