"""MAS-ProVe: process verification hooked into six multi-agent frameworks."""
