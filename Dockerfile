# Front-end bundle (bpmn-js, dmn-js, htmx, ECharts) from the npm registry, with the lockfile.
FROM node:20-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/build.mjs web/build.mjs
COPY web/static/src web/static/src
RUN npm run build

FROM python:3.11-slim
WORKDIR /app
# libcairo2: PNG charts (cairosvg); fonts-noto-cjk: Chinese in charts; fonts-wqy-microhei: the TrueType CJK font
# embedded in PDFs (reportlab cannot embed Noto CJK's CFF outlines);
# postgresql-client: pg_dump / pg_restore for `jzflow backup` and `jzflow restore` (same major as the server).
RUN apt-get update && apt-get install -y --no-install-recommends libcairo2 fonts-noto-cjk fonts-wqy-microhei postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY setup.cfg pyproject.toml constraints.txt README.md gunicorn.conf.py ./
COPY engine ./engine
COPY plan ./plan
COPY web ./web
COPY migrations ./migrations
COPY bpmn ./bpmn
COPY data ./data
COPY --from=assets /app/web/static/dist ./web/static/dist
RUN pip install --no-cache-dir -e ".[server]" -c constraints.txt \
    && python -c "from web import i18n; i18n.compile_catalogs()" \
    && mkdir -p /var/lib/jzflow && chown nobody /var/lib/jzflow
USER nobody
EXPOSE 8000
