FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY engine ./engine
COPY web ./web
COPY migrations ./migrations
COPY bpmn ./bpmn
COPY data ./data
RUN pip install --no-cache-dir -e ".[server]"
USER nobody
EXPOSE 8000
