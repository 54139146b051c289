"""Training spine: optax optimizer, masked LM loss, jitted steps, grain data,
orbax checkpoints, metrics and the loop. Import submodules directly
(``from jaxlab.train.step import make_train_step``); nothing heavy loads here."""
