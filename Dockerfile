# The Beam worker image for imgtool's pipelines: Dataflow (--sdk_container_image), Flink and
# Spark (--environment_type=DOCKER --environment_config=IMAGE). The SDK image brings Python
# 3.11 and apache-beam 2.77.0 (the launcher's Python minor version and Beam version must
# match); requirements-worker.lock adds numpy, Pillow and LiteRT at the exact versions the
# golden test checks. Not imgtool and not TensorFlow: the launcher ships the worker code in
# the pipeline. Build and push (docs/scale-out.md):
#   docker build -t REGION-docker.pkg.dev/PROJECT/images/imgtool-worker:2.77.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/images/imgtool-worker:2.77.0
FROM apache/beam_python3.11_sdk:2.77.0
COPY requirements-worker.lock /tmp/requirements-worker.lock
RUN pip install --no-cache-dir -r /tmp/requirements-worker.lock \
 && pip check \
 && python -c "import apache_beam, numpy, PIL, ai_edge_litert.interpreter; assert PIL.__version__.startswith('12.')"
