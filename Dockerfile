# The operator image: `docker build -t fleetbridge .` (images cannot be built on the development
# machines; CI for images is not set up yet). Multi-stage: build with dev dependencies, ship only
# production dependencies and the compiled JavaScript, as a non-root user.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production FLEETBRIDGE_LOG_FORMAT=json
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
COPY crds ./crds
# The chart's restricted security context runs as 65532 with a read-only root filesystem.
USER 65532:65532
EXPOSE 4320 8080
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["operator"]
