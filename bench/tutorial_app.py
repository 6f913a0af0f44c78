"""The baseline: the Flask model server as tutorials teach it, kept as it is taught.

Run: MODEL_PATH=model.joblib gunicorn -w 2 tutorial_app:app
"""

import os

import joblib
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["MODEL_PATH"])


@app.route("/predict", methods=["POST"])
def predict():
    features = request.json["features"]
    prediction = model.predict([features])
    return jsonify({"prediction": prediction.tolist()[0]})
