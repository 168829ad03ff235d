"""Lightning training: MAE pretraining and weakly supervised baselines, CPU to many GPUs."""
