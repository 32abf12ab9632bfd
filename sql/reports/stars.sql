-- name: stars
-- description: A feature's activation by star rating: reviews, fraction active, mean max, lift.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- Over the reviews that have tokens and a star rating.  lift = frac_active / the
-- feature's fraction of active reviews over all star ratings (1 = no preference).
SELECT stars, n_reviews, n_active_reviews, frac_active, mean_max_value, lift
FROM feature_by_stars($feature)
ORDER BY stars;
