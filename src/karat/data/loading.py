def build_train_loader(*a, **k): raise NotImplementedError
def build_eval_loader(*a, **k): raise NotImplementedError
