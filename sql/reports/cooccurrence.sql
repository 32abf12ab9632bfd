-- name: cooccurrence
-- description: The features most often active on the same tokens as a feature: count, Jaccard, lift.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: stars INTEGER(1..5) = NULL -- only tokens of reviews with this star rating
-- param: sort VARCHAR(count|jaccard|lift) = count -- rank by tokens in common, Jaccard index or lift
-- param: min_count INTEGER(1..) = 5 -- only features sharing at least this many tokens
-- param: k INTEGER(1..10000) = 20 -- number of features
-- The macro cooccurrence: a sparse self-join (one scan of the activations), never a
-- latents x latents matrix.  lift = n_both * n_tokens / (n_feature * n_other): 1 means
-- independent; p_other_given_feature = n_both / n_feature.
SELECT row_number() OVER (
           ORDER BY CASE $sort WHEN 'count' THEN n_both
                               WHEN 'jaccard' THEN jaccard
                               ELSE lift END DESC,
                    n_both DESC, feature) AS rank,
       feature, n_both, n_feature, n_other, jaccard, lift, p_other_given_feature, p_feature_given_other
FROM cooccurrence($feature, star_rating := $stars)
WHERE n_both >= $min_count
ORDER BY rank
LIMIT $k;
