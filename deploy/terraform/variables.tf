variable "region" {
  description = "AWS region of the worker."
  type        = string
  default     = "eu-west-1"
}

variable "instance_type" {
  description = "Worker instance type (the paper used t2.micro: one vCPU)."
  type        = string
  default     = "t2.micro"
}

variable "allowed_cidr" {
  description = "The only network allowed to reach the worker (swarm ports, SSH, the service port), e.g. the manager's public IP as a.b.c.d/32. No default: never 0.0.0.0/0 by accident."
  type        = string

  validation {
    condition     = can(cidrhost(var.allowed_cidr, 0)) && var.allowed_cidr != "0.0.0.0/0"
    error_message = "allowed_cidr must be a CIDR block other than 0.0.0.0/0, e.g. 203.0.113.7/32."
  }
}

variable "ssm_prefix" {
  description = "SSM parameter path holding the swarm's join data: <prefix>/manager-ip and <prefix>/worker-join-token (the manager writes both; see docs/swarm.md)."
  type        = string
  default     = "/starvation/swarm"
}

variable "key_name" {
  description = "Optional EC2 key pair for SSH."
  type        = string
  default     = null
}
