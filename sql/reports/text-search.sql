-- name: text-search
-- description: Reviews whose text matches a regular expression, with their strongest features and the features over-represented in them.
-- param: pattern VARCHAR -- regular expression (RE2) matched against the review text; (?i) for case-insensitive
-- param: k INTEGER(1..1000) = 10 -- matching reviews listed (first by review order), and signature features
-- param: features INTEGER(1..100) = 5 -- strongest features shown per review
-- param: min_reviews INTEGER(1..) = 3 -- signature: minimum matching reviews a feature is active in
-- Three sections: reviews (the first k matches, a snippet around the match and the
-- number of all matching reviews), features (each listed review's strongest features,
-- as review_features) and signature (features over-represented in all matching
-- reviews: lift = frac_active among them / frac_active in the corpus).

-- statement: reviews -- matching reviews
SELECT DISTINCT review_rank, review_id, stars, n_matching, snippet
FROM text_search($pattern, k := $k, n_features := $features)
ORDER BY review_rank;

-- statement: features -- each review's strongest features
SELECT review_rank, review_id, feature_rank, feature, max_value, n_tokens_active, density
FROM text_search($pattern, k := $k, n_features := $features)
WHERE feature IS NOT NULL
ORDER BY review_rank, feature_rank;

-- statement: signature -- features over-represented in the matching reviews
SELECT row_number() OVER (ORDER BY lift DESC, n_active_reviews DESC, feature) AS rank,
       feature, lift, n_active_reviews, n_reviews, frac_active, frac_active_corpus
FROM review_set_features(
    (SELECT list(review_idx) FROM reviews WHERE n_tokens > 0 AND regexp_matches(text, $pattern)),
    min_reviews := $min_reviews)
ORDER BY rank
LIMIT $k;
