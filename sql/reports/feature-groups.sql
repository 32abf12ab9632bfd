-- name: feature-groups
-- description: Where a feature is active: its businesses (or users) by active reviews, with share and lift.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- param: by VARCHAR(business|user) = business -- group by business or by user
-- param: k INTEGER(1..100000) = 10 -- number of groups
-- The macro feature_groups: share = the group's part of the feature's active reviews;
-- frac_active = active reviews / the group's reviews with tokens; lift = frac_active /
-- the feature's review density (1 = no preference).
SELECT row_number() OVER (ORDER BY n_active_reviews DESC, group_id) AS rank, *
FROM feature_groups($feature, by_ := $by)
ORDER BY rank
LIMIT $k;
