"""Classical rating-prediction baselines, as a library for the demo and the benchmarks.

Why a package of its own: the demo (``commands.compare``) prints the pushed model's RMSE next
to these baselines, so they are production code, and production code may not import the
benchmark commands (``benchmarks/``, the top floor). It sits on the floor of ``pipeline``,
``serving`` and ``index`` (pyproject.toml, import-linter contract): it builds on
``components`` only, and ``commands`` and ``benchmarks`` build on it.

One job per module:

* ``baselines.data``          -- ``RatingData`` (from the validated ``data.movielens_files``
                                 loader) and the seeded ``random_split`` every benchmark shares;
* ``baselines.base``          -- plumbing every model shares (id indexing, ALS biases, clipping);
* ``baselines.biases``        -- ``GlobalMean`` and ``Biases``;
* ``baselines.knn``           -- ``ItemItemCF`` and ``UserUserCF`` (KNNBaseline);
* ``baselines.factorization`` -- ``MatrixFactorization`` (biased Funk SVD);
* ``baselines.bayesian_fm``   -- ``BayesianFM``, the myfm Bayesian factorization machine: a peer
                                 from outside the project;
* ``baselines.models``        -- the set of models in table order, and choosing some by name;
* ``baselines.scoring``       -- fit and score models on a split.

The command that prints a table of them is ``python -m benchmarks.baselines``.
"""
