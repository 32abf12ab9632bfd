-- name: samples
-- description: Honest samples of a feature: random activations from every activation interval, plus random non-activating tokens.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: scheme VARCHAR(width|quantile) = width -- width: equal-width bins from 0 to the max (sae_vis); quantile: equal-count quantiles (delphi)
-- param: intervals INTEGER(1..100) = 10 -- number of intervals
-- param: n INTEGER(1..1000) = 5 -- random examples per interval (and non-activating examples)
-- param: seed INTEGER = 0 -- sampling seed: the same seed gives the same samples
-- param: before INTEGER(0..1000) = contract.DEFAULT_BEFORE -- context tokens before the token
-- param: after INTEGER(0..1000) = contract.DEFAULT_AFTER -- context tokens after the token
-- Three sections: intervals (bounds, count and share of the activations), examples
-- (n random members of each interval: the smallest sample_key(token_pos, seed),
-- uniform over the whole interval) and non-activating (n random tokens the feature does not
-- fire on).  Interval 1 holds the lowest values.

-- statement: intervals -- the activation intervals and their share of all activations
-- display: bars frac_activations interval
SELECT interval, lo, hi, n_activations, frac_activations
FROM feature_intervals($feature, intervals := $intervals, scheme := $scheme)
ORDER BY interval;

-- statement: examples -- random activations from each interval
SELECT interval, sample, value, review_id, stars, left_context, token, right_context
FROM interval_samples($feature, n := $n, intervals := $intervals, scheme := $scheme, seed := $seed,
                      before := $before, after := $after)
ORDER BY interval, sample;

-- statement: non-activating -- random tokens the feature does not fire on
SELECT sample, review_id, stars, review_active, left_context, token, right_context
FROM non_activating_samples($feature, n := $n, seed := $seed, before := $before, after := $after)
ORDER BY sample;
