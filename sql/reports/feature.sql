-- name: feature
-- description: A feature card: density, reviews, max/mean, quantiles, histogram, stars, top examples.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: k INTEGER(1..100) = 10 -- number of top examples
-- param: bins INTEGER(1..200) = 20 -- histogram bins
-- param: before INTEGER(0..1000) = contract.DEFAULT_BEFORE -- context tokens before the active token
-- param: after INTEGER(0..1000) = contract.DEFAULT_AFTER -- context tokens after the active token
-- Four result sets (sections): summary, histogram, stars, examples.

-- statement: summary -- the feature's statistics (quantiles of its nonzero activations)
-- display: vertical
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

-- statement: histogram -- activation values in equal-width bins from 0 to the max
-- display: bars n_activations lo
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
SELECT stars, n_reviews, n_active_reviews, frac_active, mean_max_value, lift
FROM feature_by_stars($feature)
ORDER BY stars;

-- statement: examples -- the strongest activations, in context
SELECT rank, value, review_id, stars, left_context, token, right_context
FROM top_k_contexts($feature, $k, before := $before, after := $after)
ORDER BY rank;
