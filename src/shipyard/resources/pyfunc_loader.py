"""MLflow "models from code" loader for a shipyard bundle (copied into each logged model).

MLflow runs this file to build the pyfunc model; it only points at the bundle artifact,
which shipyard loads after verifying its manifest. Nothing is unpickled.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class ShipyardBundleModel(PythonModel):
    def load_context(self, context):
        from shipyard.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.bundle.predict(frame)


mlflow.models.set_model(ShipyardBundleModel())
